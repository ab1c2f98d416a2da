# kvblend — plain GNU Makefile.
#   make [all]         build the library, the tools and the unit tests into build/
#   make check         run every test (prove); skips what needs ../shared when it is absent
#   make debug         the same tree built with ASan + UBSan into build-debug/ (make DEBUG=1 check runs it)
#   make install       PREFIX=/usr/local DESTDIR= BINDIR= MANDIR=
#   make demo          .ci/setup, build, then the reader model answers a question end to end (tests/demo.sh; MODEL=file.gguf)
#   make lint-man      mandoc -Tlint and groff -ww the man pages
#   make fuzz          run the fuzz targets for FUZZ_SECONDS (tests/fuzz/run.sh)
#   make reader        retrain tests/models/reader.gguf (python3-torch; ~1 hour on 2 cores; not in CI)
#   make clean         remove every build directory (build/, build-debug/, CI's build-noomp/, build-fuzz/)
# Knobs: OPENMP=1 (default) or 0, DEBUG=1, CC, CFLAGS, LDFLAGS.

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
DATADIR  ?= $(PREFIX)/share
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR  ?= $(DATADIR)/zsh/vendor-completions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
OPENMP   ?= 1
DEBUG    ?= 0
PKG_CONFIG ?= pkg-config
VERSION  := 0.1.0

ifeq ($(DEBUG),1)
B        ?= build-debug
OPT      := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SANLD    := -fsanitize=address,undefined
else
B        ?= build
OPT      := -O2 -g
SANLD    :=
endif

PKGS     := jansson libpcre2-8 libcurl sqlite3 libxxhash libzstd libxml-2.0 zlib
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Wshadow -Wno-unknown-pragmas -Wno-unused-parameter
CFLAGS   ?=
CPPFLAGS += -D_GNU_SOURCE -DKVBLEND_VERSION='"$(VERSION)"' -Icommon -Ikernels
ALLCFLAGS = -std=c11 $(OPT) $(WARN) -fno-math-errno $(PKG_CFLAGS) $(CFLAGS)
ifeq ($(OPENMP),1)
ALLCFLAGS += -fopenmp
OMPLD    := -fopenmp
endif
LDLIBS   += $(PKG_LIBS) -lm -lpthread

# SIMD variants are compiled with their own ISA flags; kern_init() picks one at run time.
ISA_avx2   := -mavx2 -mfma -mf16c
ISA_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx2 -mfma -mf16c

LIB_SRC  := $(sort $(wildcard common/*.c kernels/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
LIB      := $(B)/libkvblend.a
TOOLS    := $(patsubst cmd/%.c,%,$(sort $(wildcard cmd/*.c)))
BINS     := $(patsubst %,$(B)/bin/kvblend-%,$(filter-out kvblend,$(TOOLS))) $(B)/bin/kvblend
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
MANS     := $(wildcard man/*.[1-9])

all: $(BINS) $(UNITS)

# Each object also depends on the headers it includes, as the compiler lists them
# (-MMD writes $(B)/X.d beside $(B)/X.o; -MP adds a target per header, so a
# deleted header does not break the build): a header edit rebuilds only its users.
$(B)/%.o: %.c Makefile
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -MMD -MP $(ALLCFLAGS) $(if $(findstring _avx512,$*),$(ISA_avx512),$(if $(findstring _avx2,$*),$(ISA_avx2))) -c -o $@ $<

# The KV codec's dequantizing loops are written in runs of 64 for the
# vectorizer; -O2's "very cheap" cost model still leaves them scalar.
$(B)/common/kvcodec.o: ALLCFLAGS += -fvect-cost-model=cheap

-include $(LIB_OBJ:.o=.d) $(TOOLS:%=$(B)/cmd/%.d) $(UNIT_SRC:%.c=$(B)/%.d)

$(LIB): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/bin/kvblend: $(B)/cmd/kvblend.o
	@mkdir -p $(@D)
	$(CC) $(OMPLD) $(SANLD) $(LDFLAGS) -o $@ $^

$(B)/bin/kvblend-%: $(B)/cmd/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(OMPLD) $(SANLD) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: $(B)/tests/unit/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(OMPLD) $(SANLD) $(LDFLAGS) -o $@ $^ $(LDLIBS)

check: all
	KVBLEND_BIN=$(CURDIR)/$(B)/bin KVBLEND_TESTBIN=$(CURDIR)/$(B)/tests \
	  prove -e '' $(UNITS) $(sort $(wildcard tests/cli/*.t))

debug:
	$(MAKE) DEBUG=1 all

check-debug:
	$(MAKE) DEBUG=1 check

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)
	for m in $(MANS); do s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s; done
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 644 completions/kvblend.bash $(DESTDIR)$(BASHCOMPDIR)/kvblend
	for t in $(filter-out kvblend,$(TOOLS)); do ln -sf kvblend $(DESTDIR)$(BASHCOMPDIR)/kvblend-$$t; done
	install -m 644 completions/_kvblend $(DESTDIR)$(ZSHCOMPDIR)/_kvblend
	install -m 644 completions/kvblend.fish $(DESTDIR)$(FISHCOMPDIR)/kvblend.fish

MODEL  ?= tests/models/reader.gguf
# The two, quoted for the shell.
model_q  = '$(subst ','\'',$(MODEL))'
demo:
	@bash .ci/setup
	@echo "make demo: building the tools in $(B)/"
	@$(MAKE) -s --no-print-directory $(BINS)
	@test -r $(model_q) || { echo "make demo: cannot read the model "$(model_q)": give MODEL=path/to/model.gguf" >&2; exit 1; }
	sh tests/demo.sh $(B)/bin $(model_q)

lint-man:
	@command -v mandoc >/dev/null || { echo "make lint-man: mandoc is missing (bash .ci/setup installs it)" >&2; exit 1; }
	@command -v groff >/dev/null || { echo "make lint-man: groff is missing (bash .ci/setup installs groff-base)" >&2; exit 1; }
	mandoc -Tlint -Wwarning $(MANS)
	@# man-db renders with groff: every page must be warning-free there too
	@fail=0; for m in $(MANS); do \
	  w=$$(groff -mandoc -Tutf8 -ww -z $$m 2>&1); \
	  [ -z "$$w" ] || { printf '%s\n' "$$w"; fail=1; }; \
	done; exit $$fail

# The reader model (tests/rag/README): train it in PyTorch, import it with
# quantize --hf, record PyTorch's logits, and check kvblend's against them.
# Five runs, each continuing the one before (about two hours on 2 cores):
# the curriculum from one passage, then more questions per sequence, two-hop
# questions, longer contexts. READER_RUNS=N stops after run N (1-5) and
# exports that one.
READER_DIR ?= $(B)/reader
READER_RUNS ?= 5
READER_TRAIN = /usr/bin/python3 tests/rag/train.py
READER_MORE = --more-questions 3 --aux-share 0.2
reader: all
	$(READER_TRAIN) --out $(READER_DIR)/1 --seed 1 --steps 6000 --stop 2000
	[ $(READER_RUNS) -lt 2 ] || $(READER_TRAIN) --init $(READER_DIR)/1 --out $(READER_DIR)/2 \
	  --first-stage single-2-4 $(READER_MORE) --steps 2400 --seed 2
	[ $(READER_RUNS) -lt 3 ] || $(READER_TRAIN) --init $(READER_DIR)/2 --out $(READER_DIR)/3 \
	  --first-stage mixed-2-4 $(READER_MORE) --steps 1000 --seed 3
	[ $(READER_RUNS) -lt 4 ] || $(READER_TRAIN) --init $(READER_DIR)/3 --out $(READER_DIR)/4 \
	  --first-stage mixed-3-7 $(READER_MORE) --steps 2000 --seed 4
	[ $(READER_RUNS) -lt 5 ] || $(READER_TRAIN) --init $(READER_DIR)/4 --out $(READER_DIR)/5 \
	  --first-stage mixed-4-11 $(READER_MORE) --steps 1300 --seed 5
	/usr/bin/python3 tests/rag/export.py $(READER_DIR)/$(READER_RUNS) --kvblend $(B)/bin/kvblend --out tests/models
	$(B)/tests/test_reader

FUZZ_SECONDS ?= 60
fuzz:
	sh tests/fuzz/run.sh $(FUZZ_SECONDS)

# Every build directory: the default, DEBUG=1, CI's OPENMP=0 (B=build-noomp),
# the fuzz builds (tests/fuzz/run.sh, $$FUZZ_BUILD default build-fuzz) and any
# other B=build-* a user chose.
clean:
	rm -rf build build-*/

# Speed side by side with llama.cpp: make bench LLAMA_CPP=/path/to/llama.cpp/build/bin
bench: all
	KVBLEND_BIN=$(CURDIR)/$(B)/bin LLAMA_CPP=$(LLAMA_CPP) sh tests/bench/speed.sh

.PHONY: bench all check debug check-debug install demo lint-man fuzz clean reader
.SECONDARY:
