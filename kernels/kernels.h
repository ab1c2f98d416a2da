/* kernels.h — the compute kernels of the forward pass.
 *
 * Every kernel has a scalar reference (`*_ref`, plain C, obviously right) and a
 * dispatched entry point (no suffix) that runs the fastest variant this CPU
 * supports (AVX-512, AVX2+FMA, or a portable C fallback), chosen once by
 * kern_init(). Tests compare each variant with the reference on random data.
 *
 * Layouts: matrices are row-major; a weight matrix W of shape [n_out][n_in] is
 * stored as GGUF does (ne0 = n_in contiguous), each row qtype_row_size(type, n_in)
 * bytes. Threads: kernels parallelise internally (pool.h); callers do not.
 */
#ifndef KB_KERNELS_H
#define KB_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

/* Pick variants for this CPU. KVBLEND_ISA=ref|generic|avx2|avx512 forces one
 * (a variant the CPU lacks falls back to the best one available). Idempotent. */
void kern_init(void);
/* Name of the variant in use: "avx512", "avx2", "generic" or "ref". */
const char *kern_isa(void);
/* The processor's brand string ("AMD EPYC 9R14 96-Core Processor"), or
 * "unknown CPU". */
const char *kern_cpu_name(void);
/* Force a variant (tests); returns 0, or -1 when this CPU/build cannot run it. */
int kern_set_isa(const char *name);

/* The chosen level, for the dispatch switch inside each kernel family. */
enum kern_level { KERN_REF = 0, KERN_GENERIC = 1, KERN_AVX2 = 2, KERN_AVX512 = 3 };
extern enum kern_level kern_level;
/* Highest level this CPU supports. */
enum kern_level kern_cpu_level(void);

/* ---- matrix multiplication: y[t][o] = sum_i x[t][i] * W[o][i] ----
 * x: [n_tok][n_in] f32; y: [n_tok][n_out] f32 (row stride n_out).
 * W: n_out rows of qtype_row_size(wtype, n_in) bytes; wtype any supported type.
 * ws: scratch of kern_matmul_wsize() bytes (activations quantized to int8 blocks
 * for quantized weight types), 64-byte aligned; may be NULL when that size is 0.
 * n_tok == 1 is the decode case (matrix x vector); n_tok > 1 is prefill. */
size_t kern_matmul_wsize(int wtype, int n_tok, int n_in);
void kern_matmul(float *y, const float *x, const void *w, int wtype,
		 int n_tok, int n_in, int n_out, void *ws);
void kern_matmul_ref(float *y, const float *x, const void *w, int wtype,
		     int n_tok, int n_in, int n_out);

/* ---- the matrix-vector plan ----
 * For one token (decode) the fastest variant of a weight type depends on the
 * microarchitecture, not only on the ISA flags (AMD Zen 4 splits 512-bit
 * operations in two), so it is timed rather than guessed: kern_plan_matvec
 * runs each candidate on the weight matrix w, a few milliseconds, and keeps
 * another than the chosen level's own only when it is clearly (5%) faster.
 * The candidates, down to the chosen level: "avx512", "vnni256" (AVX-512 VNNI
 * on 256-bit registers; Q8_0 and Q4_0) and "avx2"; "generic" can be forced.
 * KVBLEND_MATVEC=NAME forces one instead (returns -1 when it cannot run this
 * type here). Results of the variants differ only in float rounding.
 * kern_set_isa clears the plan. */
#define KERN_PLAN_MAX 3
struct kern_plan {
	int wtype, n_cand, forced, recorded; /* recorded: taken from an earlier timing (kern_plan_use) */
	const char *isa;                 /* what one-token products of wtype now run */
	const char *cand[KERN_PLAN_MAX]; /* the candidates timed (the level's own first), */
	double us[KERN_PLAN_MAX];        /* and their best times */
};
int kern_plan_matvec(const void *w, int wtype, int n_in, int n_out, struct kern_plan *p);
/* Plan the variant named for wtype without timing (one recorded earlier, see
 * common/wisdom.h); -1 when it cannot run that type here. */
int kern_plan_use(int wtype, const char *name, struct kern_plan *p);
const char *kern_matvec_isa(int wtype);
void kern_plan_clear(void);

/* ---- RMSNorm: y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of n ---- */
void kern_rmsnorm(float *y, const float *x, const float *w, int n_rows, int n, float eps);
void kern_rmsnorm_ref(float *y, const float *x, const float *w, int n_rows, int n, float eps);

/* ---- LayerNorm: y[r] = (x[r] - mean) / sqrt(var + eps) * w + b, for n_rows rows of n ----
 * var is the biased (population) variance, as BERT's LayerNorm; y may alias x. */
void kern_layernorm(float *y, const float *x, const float *w, const float *b, int n_rows, int n, float eps);
void kern_layernorm_ref(float *y, const float *x, const float *w, const float *b, int n_rows, int n,
			float eps);

/* ---- RoPE ----
 * Rotates, in place, the first n_rot dims of every head of n_tok rows
 * (row r = n_head heads of head_dim floats, row stride n_head * head_dim) by
 * angle pos[r] * inv_freq[i] for pair i. NORM pairs dims (2i, 2i+1) (llama);
 * NEOX pairs (i, i + n_rot/2) (qwen2). inv_freq already folds in the base,
 * linear scaling and llama3 frequency factors (see rope_inv_freq()), so a
 * rotation by delta is the same call with pos = delta (blend relies on it). */
enum { KERN_ROPE_NORM = 0, KERN_ROPE_NEOX = 2 };
struct kern_rope {
	int mode;              /* KERN_ROPE_NORM or KERN_ROPE_NEOX */
	int n_rot;             /* rotated dims per head (even, <= head_dim) */
	const float *inv_freq; /* [n_rot / 2] */
};
void kern_rope(float *x, const int32_t *pos, int n_tok, int n_head, int head_dim,
	       const struct kern_rope *r);
void kern_rope_ref(float *x, const int32_t *pos, int n_tok, int n_head, int head_dim,
		   const struct kern_rope *r);

/* ---- softmax in place over n floats ---- */
void kern_softmax(float *x, int n);
void kern_softmax_ref(float *x, int n);

/* ---- SwiGLU: out[i] = silu(gate[i]) * up[i]; out may alias gate ---- */
void kern_swiglu(float *out, const float *gate, const float *up, int64_t n);
void kern_swiglu_ref(float *out, const float *gate, const float *up, int64_t n);

/* ---- fp16 rows: dst[i] = the IEEE half at src + 2i (little-endian, any alignment) ----
 * The fast path only (F16C, on the avx2 and avx512 levels): returns false,
 * writing nothing, where this machine has none, so that a caller keeps its
 * own portable loop (kvc.c). Exact, as fp16_to_fp32 (quant.h) is. */
bool kern_f16_to_f32(float *dst, const void *src, int64_t n);

/* ---- GELU, tanh form: out[i] = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); out may alias x ----
 * The approximation llama.cpp's ggml_gelu computes for BERT (not the erf form
 * of Hugging Face's "gelu": they differ by < 1e-3 absolute). Written as
 * x / (1 + e^(-2u)), the same value, so the SIMD variants need only exp. */
void kern_gelu(float *out, const float *x, int64_t n);
void kern_gelu_ref(float *out, const float *x, int64_t n);

/* ---- attention over a KV cache, GQA, causal mask by position ----
 * q:   [n_q][n_head * head_dim] (row stride q_stride)
 * k,v: [n_kv][n_kv_head * head_dim] (row stride kv_stride), slot j holds the
 *      key/value of the token at position k_pos[j] (any order).
 * out: [n_q][n_head * head_dim] (row stride q_stride).
 * Query i (position q_pos[i]) attends to every slot j with k_pos[j] <= q_pos[i];
 * head h uses kv head h / (n_head / n_kv_head). scale = 1/sqrt(head_dim).
 * ws: kern_attention_wsize() bytes of scratch. A query that sees no key gets zeros. */
size_t kern_attention_wsize(int n_q, int n_kv, int n_head);
void kern_attention(float *out, const float *q, int q_stride,
		    const float *k, const float *v, int kv_stride,
		    const int32_t *q_pos, const int32_t *k_pos, int n_q, int n_kv,
		    int n_head, int n_kv_head, int head_dim, void *ws);
void kern_attention_ref(float *out, const float *q, int q_stride,
			const float *k, const float *v, int kv_stride,
			const int32_t *q_pos, const int32_t *k_pos, int n_q, int n_kv,
			int n_head, int n_kv_head, int head_dim);
/* The same with positions per kv head (token-evicted caches): kv head g's
 * slot j holds the key at position k_pos[g * k_pos_hstride + j]
 * (k_pos_hstride 0: kern_attention). */
/* Options of the architectures that need them (NULL or zeros: none of them):
 * scale    score = q . k * scale (0: 1/sqrt(head_dim)); Gemma scales by its own.
 * window   > 0: a sliding window, query at position p sees only the keys at
 *          p - window < k_pos <= p (Gemma 2/3's local layers, Mistral).
 * softcap  > 0: score = softcap * tanh(score / softcap) before the softmax
 *          (Gemma 2's attention logit soft-capping). */
struct kern_att_opts {
	float scale;
	int32_t window;
	float softcap;
};
void kern_attention_ph(float *out, const float *q, int q_stride,
		       const float *k, const float *v, int kv_stride,
		       const int32_t *q_pos, const int32_t *k_pos, int k_pos_hstride, int n_q, int n_kv,
		       int n_head, int n_kv_head, int head_dim, void *ws);
void kern_attention_ph_ref(float *out, const float *q, int q_stride,
			   const float *k, const float *v, int kv_stride,
			   const int32_t *q_pos, const int32_t *k_pos, int k_pos_hstride, int n_q, int n_kv,
			   int n_head, int n_kv_head, int head_dim);
/* kern_attention_ph with options (o may be NULL). */
void kern_attention_ex(float *out, const float *q, int q_stride,
		       const float *k, const float *v, int kv_stride,
		       const int32_t *q_pos, const int32_t *k_pos, int k_pos_hstride, int n_q, int n_kv,
		       int n_head, int n_kv_head, int head_dim, const struct kern_att_opts *o, void *ws);
void kern_attention_ex_ref(float *out, const float *q, int q_stride,
			   const float *k, const float *v, int kv_stride,
			   const int32_t *q_pos, const int32_t *k_pos, int k_pos_hstride, int n_q, int n_kv,
			   int n_head, int n_kv_head, int head_dim, const struct kern_att_opts *o);

/* ---- APE attention (Adaptive Parallel Encoding, Yang et al., ICLR 2025) ----
 * kern_attention where the keys of slots [ctx0, ctx1) are a parallel context:
 * chunks each encoded alone after a shared prefix, all from the same position.
 * For query i, head h, with s_j = q . k_j * scale over the visible keys
 * (k_pos[j] <= q_pos[i]; the mask stays exact by position):
 *	O = the other keys (the prefix, the query itself, anything outside the range)
 *	C = the context keys, their logits divided by the temperature T
 *	W = (sum_C e^(s_j / T))^(S * T)      the context's weight as a group
 *	out = (sum_O e^s_j v_j + W * sum_C softmax_C(s / T)_j v_j) / (sum_O e^s_j + W)
 * as APE's reference code merges the two groups' log-sum-exps: the prefix and
 * the query keep the ordinary softmax, T sharpens the distribution within the
 * context, and S, an exponent on the context's summed exponentials (not a factor
 * on its weights), shrinks its share. T = S = 1 is kern_attention exactly (to
 * float rounding). The fast variants: with AVX2 or AVX-512 the tile path of
 * kern_attention with two online softmaxes (as fast as it); else blocks of
 * queries folded by the portable worker; head_dim > 256 runs the reference.
 * out must not alias q.
 * ws: kern_attention_wsize() bytes, as kern_attention. */
struct kern_ape {
	int ctx0, ctx1; /* the parallel context: slots [ctx0, ctx1) (empty: ordinary attention) */
	float temp;     /* T > 0 (APE's default 0.9) */
	float scale;    /* S > 0 (APE's default 0.9) */
};
void kern_attention_ape(float *out, const float *q, int q_stride,
			const float *k, const float *v, int kv_stride,
			const int32_t *q_pos, const int32_t *k_pos, int n_q, int n_kv,
			int n_head, int n_kv_head, int head_dim, const struct kern_ape *ape, void *ws);
void kern_attention_ape_ref(float *out, const float *q, int q_stride,
			    const float *k, const float *v, int kv_stride,
			    const int32_t *q_pos, const int32_t *k_pos, int n_q, int n_kv,
			    int n_head, int n_kv_head, int head_dim, const struct kern_ape *ape);

#endif
