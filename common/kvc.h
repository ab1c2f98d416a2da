/* kvc.h — the .kvc KV-cache stream: writer and reader (kvblend-kvc(5)).
 *
 * A .kvc stream holds one or more KV caches back to back. Each cache is
 *
 *	header    magic "\x89KVC", u16 major, u16 minor, u32 header size, flags,
 *	          model and tokenizer fingerprints, shape, dtype, RoPE, the token
 *	          ids and positions, optional last-token logits, provenance
 *	          (tool, version, the option names of its command line), CRC32C
 *	layer 0   "LAYR", u32 layer, u64 payload bytes, payload (K rows then V
 *	 ...      rows, in the dtype), CRC32C of the payload
 *	layer n-1
 *	end       "KEND", u32 n_layer, u32 digest, CRC32C
 *
 * Everything is little-endian. Every record starts 16 bytes before a 64-byte
 * boundary (zero padding in between), so every layer payload starts on a
 * 64-byte boundary and every cache is a multiple of 64 bytes long: payloads of
 * a mmapped file (or of a concatenation of caches) are aligned in place. The
 * exact byte layout is in man/kvblend-kvc.5.
 *
 * Readers accept the major version they know (KVC_MAJOR) with any minor
 * version: a newer minor may only append header fields, which the header size
 * lets an older reader skip. Every failure is a status (< 0) with a one-line
 * message in kb_error() that names the stream and tells the cases apart:
 *
 *	"'x.kvc': not a kvc stream (bad magic)"                KB_ERR_FORMAT
 *	"'x.kvc': kvc major version 2 is not supported (...)"  KB_ERR_UNSUPPORTED
 *	"'x.kvc': header checksum mismatch (corrupt header)"   KB_ERR_FORMAT
 *	"'x.kvc': layer 3: payload checksum mismatch (corrupt layer)"
 *	"'x.kvc': truncated header (100 of 2300 bytes)"        KB_ERR_FORMAT
 *	"'x.kvc': truncated in layer 3 (...)"                  KB_ERR_FORMAT
 *	"'x.kvc': truncated before the end record (...)"       KB_ERR_FORMAT
 *	"'x.kvc': read: <strerror>"                            KB_ERR_IO
 * In the second and later cache of a stream the message says which:
 *	"'x.kvc': cache 2: truncated in layer 0 (...)".
 *
 * Typical writer (a slice of a bigger in-memory cache; see kvc_write_file for
 * the one-call, atomic form):
 *
 *	struct kvc_header h;
 *	kvc_header_init(&h);            // current version, f16, K rotated
 *	memcpy(h.model_fp, m->fingerprint, 32); ... h.n_tokens = n; h.tokens = ids; ...
 *	struct kvc_writer *w;
 *	if ((rc = kvc_writer_init(&w, fd, &h)) < 0) ...
 *	for (int l = 0; l < h.n_layer; l++)
 *		if ((rc = kvc_writer_layer(w, l, kv_k(kv, l, 0), kv_v(kv, l, 0), kv->kv_dim)) < 0) ...
 *	rc = kvc_writer_finish(w);
 *	kvc_writer_free(w);
 *
 * Typical reader (htslib style: >= 0 a record, KB_EOF the end, < -1 an error):
 *
 *	struct kvc_reader *r;
 *	const struct kvc_header *h;
 *	if ((rc = kvc_reader_open_file(&r, path)) < 0) ...
 *	while ((rc = kvc_reader_next_header(r, &h)) == KB_OK) {
 *		if ((rc = kvc_check_model(h, fp, tok_fp, n_layer, n_kv_head, head_dim)) < 0) ...
 *		int l;
 *		while ((l = kvc_reader_layer(r, k, v, kv_dim)) >= 0)
 *			...layer l is in k, v ([n_tokens][kv_dim] each)...
 *		if (l != KB_EOF) ...error...
 *	}
 *	if (rc != KB_EOF) ...error...
 *	kvc_reader_free(r);
 */
#ifndef KB_KVC_H
#define KB_KVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define KVC_MAJOR 1
#define KVC_MINOR 1          /* 1: token-evicted (sparse) caches */
#define KVC_MAGIC "\x89KVC"  /* the first 4 bytes of every cache */
#define KVC_MAGIC_LEN 4      /* bytes kvc_sniff needs */
#define KVC_ALIGN 64         /* payload alignment, relative to the start of the stream */

/* Element type of the stored K and V. Append-only: the numbers are in files. */
enum kvc_dtype {
	KVC_F32 = 0,
	KVC_F16 = 1,  /* the default */
	KVC_BF16 = 2,
	KVC_Q8_0 = 3, /* blocks of 32 along each row: fp16 scale + 32 int8 (as GGUF's q8_0);
	               * needs kv_dim a multiple of 32 */
	KVC_KV8 = 4,  /* compressed layers (kvcodec.h): keys per channel, values per token, */
	KVC_KV4 = 5,  /* in groups, with 8, 4, 3 or 2 bits, then zstd; a layer's payload */
	KVC_KV3 = 6,  /* has no fixed size and no rows to read in place */
	KVC_KV2 = 7,
	KVC_DTYPE_COUNT,
};

/* Limits a reader enforces on a header (a writer refuses more). */
#define KVC_MAX_LAYER 4096
#define KVC_MAX_HEAD 4096       /* n_kv_head and head_dim each */
#define KVC_MAX_KV_DIM 65536    /* n_kv_head * head_dim */
#define KVC_MAX_TOKENS (1 << 26)
#define KVC_MAX_LOGITS (1 << 24)
#define KVC_MAX_STRING (1 << 20) /* tool, version, all of argv */

/* One cache's header. The reader fills one it owns (valid until the next
 * kvc_reader_next_header or kvc_reader_free); a writer reads one the caller
 * filled, with pointers it never frees. kvc_header_copy makes an owned copy. */
struct kvc_header {
	int major, minor;        /* version of the stream (the writer writes KVC_MAJOR.KVC_MINOR) */
	uint8_t model_fp[32];    /* model fingerprint: struct model .fingerprint (gguf_fingerprint) */
	uint8_t tok_fp[32];      /* tokenizer fingerprint: struct model .tok_fingerprint */
	int n_layer;             /* 1..KVC_MAX_LAYER */
	int n_kv_head, head_dim; /* a row of K (or V) is kv_dim = n_kv_head * head_dim floats */
	enum kvc_dtype dtype;    /* how K and V are stored (always decoded to f32) */
	int rope_mode;           /* KERN_ROPE_NORM (0, llama) or KERN_ROPE_NEOX (2, qwen2) */
	int n_rot;               /* rotated dimensions per head */
	float rope_base;         /* freq_base */
	int rope_scaling;        /* enum rope_scaling (model.h): 0 none, 1 linear, 2 llama3 */
	float rope_factor;       /* scaling factor (1 = none) */
	int rope_orig_ctx;       /* llama3 scaling: original context length (else 0) */
	bool k_rotated;          /* K stored with RoPE applied at pos[] */
	int n_tokens;            /* rows per layer; 0..KVC_MAX_TOKENS */
	int32_t *tokens;         /* [n_tokens] token ids (owned when read) */
	int32_t *pos;            /* [n_tokens] their positions (owned when read) */
	int n_logits;            /* 0 (none) or n_vocab */
	float *logits;           /* [n_logits] logits after the last token, or NULL (owned when read) */
	char *tool;              /* provenance: "kvblend-prefill" (NUL-terminated; owned when read) */
	char *version;           /* "0.1.0" */
	int argc;                /* the writer's option names: argv[0..argc-1], as */
	char **argv;             /* kvc_option_names makes them, never values or operands
				  * (owned when read: the array and each string) */
	/* Token-evicted ("sparse") caches, minor 1 (kvblend-evict --tokens): each
	 * layer keeps its own number of rows, layer_rows[l] (1..n_tokens), and each
	 * kv head of the layer its own tokens: row j of layer l holds, in head h's
	 * head_dim columns, the token tokens[i] at pos[i] with i = kvc_keep(h, l,
	 * h)[j], ascending in j. tokens[] and pos[] are then the tokens some head
	 * of some layer kept. NULL (both) for a dense cache, where every layer
	 * holds the n_tokens rows in order. (Owned when read.) */
	int32_t *layer_rows;     /* [n_layer] */
	int32_t *keep;           /* [n_kv_head * sum(layer_rows)]: layer by layer, head by head */
	uint64_t payload_bytes;  /* read only: bytes of K + V payload of a dense cache's layer
				  * (of a sparse cache: of its largest layer; 0 when compressed) */
	uint64_t payload_total;  /* read only: bytes of K + V payload of all layers (0 when
				  * compressed: kvc_reader_payload_read counts them as read) */
	uint64_t stream_offset;  /* read only: where this cache starts in the stream */
};

/* Zero *h and set the defaults: KVC_MAJOR/KVC_MINOR, KVC_F16, k_rotated,
 * rope_base 10000, rope_factor 1, tool "kvblend", version KVBLEND_VERSION. */
void kvc_header_init(struct kvc_header *h);
/* Free what an owned header points to (tokens, pos, logits, strings, argv) and
 * zero it; not the struct itself. For headers from kvc_header_copy only (the
 * reader frees its own). kvc_header_free(NULL) is a no-op. */
void kvc_header_free(struct kvc_header *h);
/* Deep copy src into *dst (owned: free with kvc_header_free). KB_OK or KB_ERR_NOMEM. */
int kvc_header_copy(struct kvc_header *dst, const struct kvc_header *src) KB_WUR;

struct option;
/* The provenance of a cache: the option names of the writer's command line,
 * for .argv of the header. argv[1..argc) is read by getopt_long's rules with
 * the tool's optstring and longopts (argv as getopt_long left it, or as given);
 * each option becomes its name as typed ("--query" for --query=X or --query X,
 * a unique abbreviation as the full name; "-q" for -q, each letter of a
 * cluster like -vq on its own), and every value and operand is dropped, as are
 * words after "--" and options the tables do not know: prompts, queries,
 * prefixes and paths never land in a cache or a shared store.
 * On KB_OK, *names (one malloc() block: free(*names)) holds *n strings; KB_ERR_NOMEM. */
int kvc_option_names(int argc, char *const argv[], const char *optstring, const struct option *longopts,
		     char ***names, int *n) KB_WUR;

/* Record a setting's value with the option names of kvc_option_names (*names,
 * *n; replaced by a new block, the old one freed): the entry "--option" becomes
 * "--option=value", or "--option=value" is added at the end. For values that
 * are settings, never user text: the prompt template a tool resolved
 * ("--template=chatml" even when auto chose it). KB_OK or KB_ERR_NOMEM (the
 * names as they were). */
int kvc_option_names_set(char ***names, int *n, const char *option, const char *value) KB_WUR;

/* The rows layer l holds: layer_rows[l] for a sparse cache, else n_tokens. */
int kvc_layer_rows(const struct kvc_header *h, int l);
/* The indices into tokens[] that kv head `head` of layer l keeps
 * (kvc_layer_rows(h, l) of them, ascending), or NULL for a dense cache. */
const int32_t *kvc_keep(const struct kvc_header *h, int l, int head);
/* Is the cache token-evicted (a sparse cache)? */
static inline bool kvc_is_sparse(const struct kvc_header *h) { return h->layer_rows != NULL; }

/* The bits of a compressed dtype (kv8 ... kv2), or 0 for a row dtype. */
int kvc_codec_bits(int dtype);
/* "f32", "f16", "bf16", "q8_0", "kv8", "kv4", "kv3", "kv2"; "?" for an unknown id. */
const char *kvc_dtype_name(int dtype);
/* The dtype named (case-insensitive), or -1. */
int kvc_dtype_from_name(const char *name);
/* Bytes of one stored row of kv_dim elements; 0 when the dtype is unknown, a
 * compressed one (no rows), or kv_dim does not fit it (q8_0 needs a multiple of 32). */
size_t kvc_row_bytes(int dtype, size_t kv_dim);
/* Check a header a writer is given: shape and counts within the limits, a
 * known dtype that fits kv_dim (q8_0: "q8_0 needs kv_dim (n_kv_head x
 * head_dim) a multiple of 32, got 48"), tokens/pos present when n_tokens > 0,
 * logits when n_logits > 0. KB_OK or KB_ERR_ARG. */
int kvc_header_check(const struct kvc_header *h) KB_WUR;

/* Does the cache fit this model? KB_OK, or KB_ERR_MISMATCH with a message:
 *	"cache was made with another model (fingerprint 1a2b3c4d… vs 5e6f7a8b…)"
 *	"cache was made with another tokenizer (fingerprint ... vs ...)"
 *	"cache shape 2 layers x 4 kv heads x 64 does not match the model's 30 x 3 x 64"
 * The first fingerprint is the cache's, the second the model's. A NULL
 * fingerprint is not checked. */
int kvc_check_model(const struct kvc_header *h, const uint8_t model_fp[32], const uint8_t tok_fp[32],
		    int n_layer, int n_kv_head, int head_dim) KB_WUR;

/* true when buf (n bytes) starts with the kvc magic (n >= KVC_MAGIC_LEN). Lets a
 * tool tell a cache from text or GGUF on stdin: read a few bytes itself, sniff,
 * then hand them to kvc_reader_open_fd_prefix. */
bool kvc_sniff(const void *buf, size_t n);

/* ---- writer ----
 * Writes one cache to fd through a buffer; never seeks, so fd may be a pipe.
 * The header goes out at init, each layer as soon as it is written (a reader
 * at the other end of a pipe can start on layer 0 while later layers are
 * computed). To write a stream of caches, write them one after the other on
 * the same fd. The writer does not close fd. */
struct kvc_writer;

/* Check h (kvc_header_check), write the header. h is copied: the caller's
 * arrays may go once this returns. Returns KB_OK and *w, or KB_ERR_ARG /
 * KB_ERR_IO / KB_ERR_NOMEM. */
int kvc_writer_init(struct kvc_writer **w, int fd, const struct kvc_header *h) KB_WUR;
/* Write layer `layer`, which must be the next one (0, 1, ..., n_layer - 1).
 * k and v each hold kvc_layer_rows(h, layer) rows of kv_dim f32, row t at k + t * row_stride
 * (row_stride >= kv_dim floats; so a slice of a bigger cache is written in
 * place). They are converted to the header's dtype. KB_OK, KB_ERR_ARG (out of
 * order, row_stride < kv_dim) or KB_ERR_IO. */
int kvc_writer_layer(struct kvc_writer *w, int layer, const float *k, const float *v,
		     size_t row_stride) KB_WUR;
/* Write the end record (after the last layer; KB_ERR_ARG if layers are missing). */
int kvc_writer_finish(struct kvc_writer *w) KB_WUR;
/* Bytes written so far (after finish: the cache's size, a multiple of KVC_ALIGN). */
uint64_t kvc_writer_bytes(const struct kvc_writer *w);
/* Free the writer (without writing the end record when finish was not called:
 * what was written then reads as truncated). kvc_writer_free(NULL) is a no-op. */
void kvc_writer_free(struct kvc_writer *w);

/* Source of a layer for kvc_write_file_cb: point *k and *v at layer l's rows,
 * *row_stride floats apart. Return KB_OK or an error status (recorded with
 * kb_fail), which stops the write. */
typedef int (*kvc_layer_fn)(void *ctx, int layer, const float **k, const float **v,
			    size_t *row_stride);

/* Write one whole cache to path atomically (a temporary file in the same
 * directory, fsync, rename: readers see the old file or the complete new one,
 * never a part). "-" writes to stdout, and a device or a FIFO (/dev/null, a
 * named pipe) is written in place; either refuses a terminal (KB_ERR_ARG).
 * Layer l's K rows start at k + l * layer_stride, row t at + t * row_stride
 * floats; likewise v. (struct kv_cache: layer_stride = n_ctx * kv_dim,
 * row_stride = kv_dim.) KB_OK, KB_ERR_ARG, KB_ERR_IO or KB_ERR_NOMEM. */
int kvc_write_file(const char *path, const struct kvc_header *h, const float *k, const float *v,
		   size_t layer_stride, size_t row_stride) KB_WUR;
/* The same with the layers from a callback. */
int kvc_write_file_cb(const char *path, const struct kvc_header *h, kvc_layer_fn fn,
		      void *ctx) KB_WUR;

/* ---- reader ----
 * Reads a stream of caches from a file descriptor (a regular file starting at
 * offset 0 is mmapped; anything else, pipes included, is read with buffered
 * reads that return as soon as the bytes asked for have arrived) or from
 * memory. All sizes are checked against the limits and against the bytes
 * actually there before anything is allocated; a hostile stream gives an
 * error, never a crash or a huge allocation. */
struct kvc_reader;

/* Read from fd (not closed by the reader). name is for messages ("<stdin>"). */
int kvc_reader_open_fd(struct kvc_reader **r, int fd, const char *name) KB_WUR;
/* The same when the first prefix_len bytes of the stream were already read
 * from fd by the caller (to sniff it): they are copied and come first. */
int kvc_reader_open_fd_prefix(struct kvc_reader **r, int fd, const void *prefix, size_t prefix_len,
			      const char *name) KB_WUR;
/* Read from len bytes at buf (not copied: it must outlive the reader). Raw
 * payload pointers are 64-byte aligned when buf is. */
int kvc_reader_open_mem(struct kvc_reader **r, const void *buf, size_t len, const char *name) KB_WUR;
/* Open path ("-" = stdin) and read from it; the reader closes the file. */
int kvc_reader_open_file(struct kvc_reader **r, const char *path) KB_WUR;
/* Free the reader (unmap, close what it opened). kvc_reader_free(NULL) is a no-op. */
void kvc_reader_free(struct kvc_reader *r);

/* Move to the next cache of the stream and read its header. Layers of the
 * current cache not read yet are skipped (their checksums still verified) and
 * its end record is checked first. Returns KB_OK and *h (owned by the reader,
 * valid until the next call or kvc_reader_free); KB_EOF when the stream ends
 * cleanly (no byte before a header: an empty stream, or the end of the last
 * cache); or an error. */
int kvc_reader_next_header(struct kvc_reader *r, const struct kvc_header **h) KB_WUR;
/* Read the next layer, verify its checksum and decode it to f32: its rows
 * (kvc_layer_rows: n_tokens unless sparse)
 * of kv_dim floats into k and into v, row t at + t * row_stride (row_stride >=
 * kv_dim). k and v may both be NULL: verify and skip without decoding (a compressed
 * layer is decompressed all the same, to check it).
 * Returns the layer index (>= 0) as soon as that layer's bytes have arrived;
 * after the last layer, checks the end record and returns KB_EOF; or an error
 * (k and v untouched unless the layer read and verified). */
int kvc_reader_layer(struct kvc_reader *r, float *k, float *v, size_t row_stride) KB_WUR;
/* The next layer's payload as stored (checksum verified), not decoded: *k and
 * *v point at the layer's rows (kvc_layer_rows) of kvc_row_bytes(dtype, kv_dim) bytes each, *bytes
 * is the size of one of them. The pointers are into the mapping or the
 * reader's buffer, valid until the next call on r, and 64-byte aligned (for a
 * memory reader: when its buffer is). Same returns as kvc_reader_layer. */
int kvc_reader_layer_raw(struct kvc_reader *r, const void **k, const void **v, size_t *bytes) KB_WUR;
/* Skip the rest of the current cache's layers (verified) and check its end
 * record. KB_OK or an error. After it, kvc_reader_layer returns KB_EOF. */
int kvc_reader_end(struct kvc_reader *r) KB_WUR;
/* Payload bytes of the layers read so far in the current cache (what a
 * compressed cache takes). */
uint64_t kvc_reader_payload_read(const struct kvc_reader *r);
/* Stream offset of the next byte the reader will consume. */
uint64_t kvc_reader_offset(const struct kvc_reader *r);
/* true when the reader mmapped its file (or reads memory). */
bool kvc_reader_is_mapped(const struct kvc_reader *r);

/* Decode n rows stored in dtype (row_bytes = kvc_row_bytes(dtype, kv_dim) apart
 * at src) into f32 rows row_stride floats apart. */
void kvc_decode_rows(int dtype, const void *src, size_t n, size_t kv_dim, float *dst,
		     size_t row_stride);

#endif
