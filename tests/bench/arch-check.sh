#!/bin/sh
# arch-check.sh — kvblend's forward pass against llama.cpp's on synthetic models
# of each architecture kvblend runs: the real shapes (qwen3-0.6b, llama3.2-1b,
# gemma2-2b, gemma3-1b, phi-3.5-mini, smollm2-135m) and the tiny ones the unit
# tests use. For each: the greedy continuation (ids, must be identical) and the
# final hidden state of every prompt token (lowest cosine), from kvblend
# (tests/bench/arch_ours.c) and from llama.cpp's C API (tests/bench/arch_llama.c),
# on the same GGUF file. Models are untied where the real one is tied (except
# gemma2, which llama.cpp only runs tied): a tied random model repeats its
# last token, which would make the greedy check empty.
#
#   LLAMA_CPP=/path/to/llama.cpp tests/bench/arch-check.sh [SHAPE...]
#   LLAMA_CPP=/path/to/llama.cpp tests/bench/arch-check.sh --golden > tests/models/arch-golden.txt
#
# LLAMA_CPP is a llama.cpp source tree built with cmake into build/ (a 2026 one:
# unslothai/llama.cpp of 2026-08 has every architecture here).
# Real vocabularies where ../shared has them (SmolLM2's tokenizer.json, llama.cpp's
# Phi-3 vocabulary), else a generated one of the real size.
# Environment: TYPE (f32 or f16; default f16 for the real shapes, the tiny ones
# are always f32), N (greedy tokens, default 32), PROMPT (prompt tokens, default
# 37; 600 takes Gemma 3's windowed layers past their 512), THREADS (default 2),
# DIR (models and programs, kept for reuse; default $TMPDIR/kvblend-arch-check),
# KVBLEND_BIN.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${KVBLEND_BIN:-$top/build/bin}
dir=${DIR:-${TMPDIR:-/tmp}/kvblend-arch-check}
shared=${KVBLEND_TESTDATA:-$top/../shared}
threads=${THREADS:-2}
n=${N:-32}
[ -n "${LLAMA_CPP:-}" ] && [ -d "$LLAMA_CPP/include" ] && [ -d "$LLAMA_CPP/build/bin" ] ||
	{ echo "arch-check.sh: set LLAMA_CPP to a llama.cpp tree built with cmake (include/, build/bin/)" >&2; exit 1; }
[ -x "$bin/kvblend-quantize" ] && [ -f "$top/build/libkvblend.a" ] ||
	{ echo "arch-check.sh: build kvblend first (make)" >&2; exit 1; }
mkdir -p "$dir"
L=$LLAMA_CPP
cc -O2 -std=c11 -D_GNU_SOURCE -I"$top/common" -I"$top/kernels" "$top/tests/bench/arch_ours.c" "$top/build/libkvblend.a" \
	$(pkg-config --libs jansson libpcre2-8 libcurl sqlite3 libxxhash libzstd libxml-2.0 zlib) -lm -lpthread -fopenmp \
	-o "$dir/arch_ours"
cc -O2 -I"$L/include" -I"$L/ggml/include" "$top/tests/bench/arch_llama.c" -L"$L/build/bin" -lllama -lggml -lggml-base \
	-Wl,-rpath,"$L/build/bin" -o "$dir/arch_llama"

# a prompt of ids that every vocabulary has (all have >= 512 tokens): 1, 50, 60, ..., 400, 50, ...
ids=$(awk -v n="${PROMPT:-37}" 'BEGIN { s = "1"; for (i = 1; i < n; i++) s = s " " (50 + 10 * ((i - 1) % 36)); print s }')

model() { # SHAPE -> path of its GGUF
	untied=--untied
	case $1 in *gemma2*) untied= ;; esac
	case $1 in tiny-*) t=f32 ;; *) t=${TYPE:-f16} ;; esac
	vocab=
	case $1 in
	phi-*) vocab=$shared/tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf ;;
	smollm2-*) vocab=$shared/tokenizers/smollm2-135m-instruct/tokenizer.json ;;
	esac
	[ -n "$vocab" ] && [ -f "$vocab" ] || vocab=
	f="$dir/$1-$t${vocab:+-vocab}.gguf"
	[ -s "$f" ] || "$bin/kvblend-quantize" --synthetic "$1" $untied ${vocab:+--vocab "$vocab"} "$f" "$t" >&2
	echo "$f"
}

tiny="tiny-llama tiny-qwen3 tiny-llama3 tiny-gemma2 tiny-gemma3 tiny-phi3"
if [ "${1:-}" = --golden ]; then
	cat <<HEAD
# tests/models/arch-golden.txt — llama.cpp's answers for the tiny synthetic models of each
# architecture (kvblend quantize --synthetic SHAPE [--untied] OUT f32, seed 1), made by
# tests/bench/arch-check.sh --golden with llama.cpp $(cd "$L" && git log -1 --format=%h 2>/dev/null || echo "(unknown commit)") (unslothai/llama.cpp, 2026-08).
# Per model: 'shape NAME untied 0|1', 'prompt IDS', 'greedy IDS' (16), 'hidden FLOATS' (the
# last prompt token's final hidden state, after the output norm).
HEAD
	for s in $tiny; do
		u=1; case $s in *gemma2*) u=0 ;; esac
		echo "$ids" | "$dir/arch_llama" "$(model "$s")" 16 "$threads" >"$dir/golden.$s"
		echo "shape $s untied $u"; echo "prompt $ids"
		echo "greedy $(head -n 1 "$dir/golden.$s")"; echo "hidden $(tail -n 1 "$dir/golden.$s")"
	done
	exit 0
fi

[ $# -gt 0 ] || set -- $tiny smollm2-135m qwen3-0.6b llama3.2-1b gemma3-1b gemma2-2b phi-3.5-mini
echo "# $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), $threads threads, llama.cpp $(cd "$L" && git log -1 --format=%h 2>/dev/null || echo '?')"
echo "# prompt of $(echo "$ids" | wc -w) tokens, $n greedy tokens"
printf '%-14s %-5s %-6s %7s %-9s %s\n' shape type arch tokens greedy "min cosine (hidden states)"
fail=0
for s in "$@"; do
	f=$(model "$s")
	echo "$ids" | "$dir/arch_ours" "$f" "$n" >"$dir/ours.$s"
	echo "$ids" | "$dir/arch_llama" "$f" "$n" "$threads" >"$dir/theirs.$s"
	arch=$("$bin/kvblend-info" "$f" 2>/dev/null | sed -n "s/^  architecture \([a-z0-9]*\).*/\1/p" | head -n 1)
	case $s in tiny-*) ty=f32 ;; *) ty=${TYPE:-f16} ;; esac
	awk -v s="$s" -v t="$ty" -v a="$arch" '
		FNR == 1 { if (FILENAME == ARGV[1]) ia = $0; else ib = $0; next }
		FILENAME == ARGV[1] { x[FNR] = $0; na = FNR; next }
		{ y[FNR] = $0; nb = FNR }
		END {
			mc = 2
			for (r = 2; r <= na; r++) {
				k = split(x[r], p, " "); split(y[r], q, " ")
				d = 0; pp = 0; qq = 0
				for (j = 1; j <= k; j++) { d += p[j] * q[j]; pp += p[j] * p[j]; qq += q[j] * q[j] }
				c = d / sqrt(pp * qq); if (c < mc) mc = c
			}
			printf "%-14s %-5s %-6s %7d %-9s %.7f\n", s, t, a, split(ia, g, " "), ia == ib ? "identical" : "DIFFER", mc
			if (ia != ib || na != nb || mc < 0.99999) exit 1
		}' "$dir/ours.$s" "$dir/theirs.$s" || fail=1
done
exit $fail
