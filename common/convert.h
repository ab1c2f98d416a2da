/* convert.h — convert the weights of a GGUF model to another tensor type
 * (what kvblend-quantize does, callable from tests and other tools).
 *
 * Every metadata key is copied in order; `general.file_type` is set (replaced
 * in place, or added at the end) to llama.cpp's LLAMA_FTYPE for the target type,
 * and `general.quantization_version` = 2 when the target is quantized. Tensors
 * keep their order, names and shapes:
 *   - a tensor of 2 or more dimensions (rows of ne[0]) becomes the target type,
 *     unless ne[0] is not a multiple of the target's block size: then f32;
 *   - a 1-D tensor (norms, biases) becomes f32;
 *   - a tensor already of the type it would become is copied byte for byte,
 *     and so are integer tensors (i8 .. i64) and f64;
 *   - any other tensor goes through float with the quant traits
 *     (quant.h to_float / from_float); a type without traits is an error.
 * The output is written atomically by the GGUF writer ("-" = stdout).
 */
#ifndef KB_CONVERT_H
#define KB_CONVERT_H

#include <stdint.h>

#include "util.h"

/* What happened to one tensor. */
enum convert_action {
	CONVERT_CONVERTED,   /* converted to the target type */
	CONVERT_COPIED,      /* already the type it would become: bytes copied */
	CONVERT_KEPT_1D,     /* 1-D: stored as f32 */
	CONVERT_KEPT_BLOCKS, /* ne[0] is not a whole number of target blocks: stored as f32 */
	CONVERT_KEPT_AS_IS,  /* integer or f64 data: copied unchanged */
};

struct convert_tensor {
	const char *name;      /* NUL-terminated; valid during the callback only */
	uint32_t n_dims;
	const int64_t *ne;     /* [n_dims] */
	int from, to;          /* enum qtype */
	enum convert_action action;
};

struct convert_stats {
	uint64_t n_tensors;
	uint64_t n_converted, n_copied, n_kept_1d, n_kept_blocks, n_kept_as_is; /* by action */
	uint64_t in_file_bytes;      /* size of the input file */
	uint64_t in_tensor_bytes, out_tensor_bytes; /* tensor data before and after */
	uint64_t out_file_bytes;     /* size of the output file (0 when written to stdout) */
};

struct convert_opts {
	/* Called once per tensor, in file order, before the output is written (e.g. for
	 * --verbose); may be NULL. */
	void (*on_tensor)(void *ctx, const struct convert_tensor *t);
	void *ctx;
};

/* LLAMA_FTYPE of a target type (f32 0, f16 1, q4_0 2, q8_0 7, bf16 32), or -1
 * when the type is not one that convert_gguf() can write. */
int convert_ftype(int type);
/* The target types convert_gguf() can write, in a stable order; *n gets the count. */
const int *convert_types(int *n);

/* Convert in (a GGUF path, "-" = stdin) to out (a path, "-" = stdout) with the
 * 2-D tensors in type. opts and stats may be NULL. Returns KB_OK, or KB_ERR_ARG
 * (type not a target), KB_ERR_IO, KB_ERR_FORMAT (bad input), KB_ERR_UNSUPPORTED
 * (a tensor type that cannot be converted), KB_ERR_NOMEM, with kb_error() set;
 * nothing is left at out on failure. Converted data is held in memory until
 * the file is written (peak: the size of the converted tensors). */
int convert_gguf(const char *in, const char *out, int type, const struct convert_opts *opts,
		 struct convert_stats *stats) KB_WUR;

#endif
