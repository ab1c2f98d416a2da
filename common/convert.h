/* convert.h — convert the weights of a GGUF model to another tensor type
 * (what kvblend-quantize does, callable from tests and other tools).
 *
 * The target is a tensor type (f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K) or
 * one of llama.cpp's K-quant mixes (CONVERT_Q4_K_M, CONVERT_Q5_K_M), which give
 * some tensors more bits (convert_tensor_type()).
 * Every metadata key is copied in order; `general.file_type` is set (replaced
 * in place, or added at the end) to llama.cpp's LLAMA_FTYPE for the target,
 * and `general.quantization_version` = 2 when the target is quantized. Tensors
 * keep their order, names and shapes:
 *   - a tensor of 2 or more dimensions (rows of ne[0]) becomes the type
 *     convert_tensor_type() gives it: the target type, a mix's choice, or a
 *     fallback when ne[0] is not a multiple of that type's block size;
 *   - a 1-D tensor (norms, biases) becomes f32;
 *   - a tensor already of the type it would become is copied byte for byte,
 *     and so are integer tensors (i8 .. i64) and f64;
 *   - any other tensor goes through float with the quant traits
 *     (quant.h to_float / from_float); a type without traits is an error.
 * The output is written atomically by the GGUF writer ("-" = stdout).
 */
#ifndef KB_CONVERT_H
#define KB_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "quant.h"
#include "util.h"

/* The K-quant mixes as targets, beside the type ids (enum qtype < QTYPE_COUNT). */
enum {
	CONVERT_Q4_K_M = 1015, /* q4_K; q6_K for the output and half the attn_v, ffn_down */
	CONVERT_Q5_K_M = 1017, /* q5_K; the same in q6_K */
};

/* What happened to one tensor. */
enum convert_action {
	CONVERT_CONVERTED,   /* converted to the type the target gives it */
	CONVERT_COPIED,      /* already the type it would become: bytes copied */
	CONVERT_KEPT_1D,     /* 1-D: stored as f32 */
	CONVERT_KEPT_BLOCKS, /* ne[0] is not a whole number of blocks of that type: the fallback
				(f32; q8_0 for the K-quants when ne[0] is a multiple of 32) */
	CONVERT_KEPT_AS_IS,  /* integer or f64 data: copied unchanged */
};

struct convert_tensor {
	const char *name;      /* NUL-terminated; valid during the callback only */
	uint32_t n_dims;
	const int64_t *ne;     /* [n_dims] */
	int from, to;          /* enum qtype */
	int want;              /* the type the target gives it (to, but for CONVERT_KEPT_BLOCKS) */
	enum convert_action action;
	const char *source;    /* hfimport.h: the Hugging Face tensor it comes from; else NULL */
	bool permuted;         /* hfimport.h: its rows were permuted (llama's q and k) */
};

struct convert_stats {
	uint64_t n_tensors;
	uint64_t n_converted, n_copied, n_kept_1d, n_kept_blocks, n_kept_as_is; /* by action */
	uint64_t n_by_type[QTYPE_COUNT]; /* tensors written in each type */
	uint64_t in_file_bytes;      /* size of the input file */
	uint64_t in_tensor_bytes, out_tensor_bytes; /* tensor data before and after */
	uint64_t out_file_bytes;     /* size of the output file (0 when written to stdout) */
};

struct convert_opts {
	/* Called once per tensor, in file order, before the output is written (e.g. for
	 * --verbose); may be NULL. */
	void (*on_tensor)(void *ctx, const struct convert_tensor *t);
	void *ctx;
	const char *chat_template; /* NULL, or the text tokenizer.chat_template gets (llama.cpp's
				    * gguf-new-metadata --chat-template) */
};

/* LLAMA_FTYPE of a target (f32 0, f16 1, q4_0 2, q8_0 7, bf16 32, q4_K 14 (llama.cpp's
 * Q4_K_S), q5_K 16 (Q5_K_S), q6_K 18, q4_K_m 15, q5_K_m 17), or -1 when it is not
 * one that convert_gguf() can write. */
int convert_ftype(int target);
/* The targets convert_gguf() can write, in a stable order; *n gets the count. */
const int *convert_types(int *n);
/* Name of a target as the tools spell it ("q8_0", "q4_k", "q4_k_m"), or NULL. */
const char *convert_target_name(int target);
/* Target of a name (any case), or -1. */
int convert_target_from_name(const char *name);

/* The type of tensor `name` (n_dims dimensions, rows of ne0) for target:
 * 1-D tensors f32; 2-D ones the target type or, for a mix, llama.cpp's rule of
 * thumb: q6_K for the output projection (output.weight, or token_embd.weight
 * when has_output is false), for attn_v and ffn_down of the layers that get
 * more bits (the first and last eighth of the n_layer layers and every third
 * in between), q5_K (Q4_K_M) or q6_K (Q5_K_M) for a fused attn_qkv; the rest
 * the mix's base type. Then, when ne0 is not a multiple of the chosen type's
 * block size, the fallback: q8_0 for a K-quant when ne0 is a multiple of 32,
 * else f32 (llama.cpp falls back to q5_0 / q5_1 / q8_0, then f16).
 * *want (may be NULL) gets the type chosen before the fallback. */
int convert_tensor_type(int target, const char *name, uint32_t n_dims, int64_t ne0, int n_layer, bool has_output,
			int *want);

/* Convert in (a GGUF path, "-" = stdin) to out (a path, "-" = stdout) with the
 * 2-D tensors in the types of target. opts and stats may be NULL. Returns KB_OK,
 * or KB_ERR_ARG (not a target), KB_ERR_IO, KB_ERR_FORMAT (bad input), KB_ERR_UNSUPPORTED
 * (a tensor type that cannot be converted), KB_ERR_NOMEM, with kb_error() set;
 * nothing is left at out on failure. Converted data is held in memory until
 * the file is written (peak: the size of the converted tensors). */
int convert_gguf(const char *in, const char *out, int target, const struct convert_opts *opts,
		 struct convert_stats *stats) KB_WUR;

#endif
