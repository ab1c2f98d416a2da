/* matmul_impl.h — private to the matmul kernels: the call descriptor, the
 * layout of the quantized activations in the scratch, and the table each ISA
 * file fills in.
 *
 * Quantized weights (Q8_0, Q4_0) are multiplied against activations quantized
 * to int8 blocks of 32, one scratch row per token (stride mm_xq_stride()):
 *
 *   int8_t qs[nb2 * 32]  quants, nb2 = nb rounded up to even; padding zero
 *   float  d[nbp]        block scales (x ~ d * q), nbp = nb rounded up to 16; padding zero
 *   float  c[nbp]        d * sum(q) per block, for kernels that feed the weight
 *                        quants as unsigned bytes (see below); padding zero
 *   int32  ks[nbp]       -K * sum(q), K the offset of the weight type below
 *
 * Unsigned weight trick: u8 x s8 dot instructions (maddubs, vpdpbusd) want one
 * unsigned operand. Q4_0 nibbles q are already unsigned and Q8_0 quants w become
 * unsigned as w + 128 (w ^ 0x80); the constant offset K (8 or 128) is then taken
 * back out once per output: sum_b dw_b dx_b dot(q - K, x)_b
 *   = sum_b dw_b dx_b dot(q, x)_b - K * sum_b dw_b c_b,
 * or per block in integers: dot(q - K, x) = dot(q, x) + ks.
 *
 * K-quant weights (Q4_K, Q5_K, Q6_K) take activations in super-blocks of 256
 * instead (ggml's Q8_K idea), see "K-quants" below.
 *
 * Token-tiled layout (mm_args.xtiled, chosen by an ISA's tile_min_tok): the
 * tokens in tiles of MM_XT (the last padded with zero tokens), each tile
 * nb records of MM_XT_BLOCK bytes, record b holding block b of every token:
 *   int8_t qs[MM_XT][32] | float d[MM_XT] | int32 ks[MM_XT]
 * so a kernel walks one pointer for all the tile's tokens.
 */
#ifndef KB_MATMUL_IMPL_H
#define KB_MATMUL_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

struct mm_args {
	float *y;            /* [n_tok][n_out] */
	const float *x;      /* [n_tok][n_in] */
	const uint8_t *w;    /* n_out rows of w_stride bytes */
	size_t w_stride;
	int wtype, n_tok, n_in, n_out;
	uint8_t *xq;         /* quantized activations, n_tok rows of xq_stride (64-aligned) */
	size_t xq_stride;
	int nb;              /* blocks of 32 per row (Q8_0, Q4_0); super-blocks of 256 (K-quants) */
	int xtiled;          /* xq in the token-tiled layout */
};

#define MM_XT 8
#define MM_XT_BLOCK (MM_XT * 40)

static inline int mm_round_up(int n, int m)
{
	return (n + m - 1) / m * m;
}

/* Bytes of one quantized activation row of nb blocks (a multiple of 64). */
static inline size_t mm_xq_stride(int nb)
{
	return (size_t)mm_round_up(nb, 2) * 32 + (size_t)mm_round_up(nb, 16) * 12;
}

static inline int8_t *mm_xq_qs(const struct mm_args *a, int t)
{
	return (int8_t *)(a->xq + (size_t)t * a->xq_stride);
}

static inline float *mm_xq_d(const struct mm_args *a, int t)
{
	return (float *)(a->xq + (size_t)t * a->xq_stride + (size_t)mm_round_up(a->nb, 2) * 32);
}

static inline float *mm_xq_c(const struct mm_args *a, int t)
{
	return mm_xq_d(a, t) + mm_round_up(a->nb, 16);
}

static inline int32_t *mm_xq_ks(const struct mm_args *a, int t)
{
	return (int32_t *)(mm_xq_c(a, t) + mm_round_up(a->nb, 16));
}

/* Record of block 0 of the tile holding token t (token-tiled layout). */
static inline uint8_t *mm_xt_tile(const struct mm_args *a, int t)
{
	return a->xq + (size_t)(t / MM_XT) * a->nb * MM_XT_BLOCK;
}

/* Decode streams each weight once from memory, a tile of rows at a time, and
 * the hardware prefetchers start each tile's rows cold: the tile code calls
 * this at each of its n_it steps (it = 0 .. n_it - 1) to prefetch the it-th
 * slice of bytes [off, off + len) of each of the next tile's rows [r, r + nrows)
 * (none past the last row). So the next tile is in cache when its turn comes.
 * tg128 of a SmolLM2-135M shape, one thread, Intel Xeon (AVX-512), interleaved
 * runs on a loaded machine: q4_0 57-91 -> 77-148 t/s, q8_0 48-63 -> 65-81,
 * against prefetching each row 256 bytes ahead of itself. */
static inline void mm_prefetch_tile(const struct mm_args *a, int r, int nrows, size_t off, size_t len, int it,
				    int n_it)
{
	if (r + nrows > a->n_out)
		nrows = a->n_out - r;
	const size_t b0 = off + len * (size_t)it / (size_t)n_it, b1 = off + len * (size_t)(it + 1) / (size_t)n_it;
	for (int i = 0; i < nrows; i++) {
		const char *p = (const char *)a->w + (size_t)(r + i) * a->w_stride;
		for (size_t o = b0 & ~(size_t)63; o < b1; o += 64)
			__builtin_prefetch(p + o, 0, 3);
	}
}

/* The unsigned offset K of a weight type's quants. */
static inline int mm_offset(int wtype)
{
	return wtype == QTYPE_Q8_0 ? 128 : 8;
}

/* Output rows handled together by one task; a multiple of every ISA's row tile. */
#define MM_ROW_BLOCK 16
/* Blocks of 32 per K chunk: kernels keep per-row tables of this many scales. */
#define MM_KCHUNK 256

/* ---- K-quants ----
 * Q4_K / Q5_K / Q6_K weights meet activations quantized per super-block of
 * 256 to int8 with one float scale, in records of MM_KX_REC bytes:
 *   int8_t qs[256]   quants in element order (x ~ d * q, d = amax / 127)
 *   float  fx[16]    d * (sum of the quants of group g), groups of the weight
 *                    type's sub-block size: Q4_K / Q5_K 8 groups of 32 (fx[8..15]
 *                    zero), Q6_K 16 of 16; with them a sub-block's min term is
 *                    one multiply-add: sum_i m * x_i = m * fx[g]
 *   float  d
 * A super-block's dot product is then, with the weights as
 * x = dw * sc[j] * q - dm * m[j] (q >= 0, sc, m small integers per sub-block j;
 * Q6_K: dm = dw, m[j] = 32 * sc[j] for its offset of 32):
 *   dw * d * sum_j sc[j] * dot(q_j, qs_j) - dm * sum_j m[j] * fx[j]
 * the first sum in integers (u8 x s8 products: q <= 63, so pairs fit int16).
 * Row layout: super-block b of token t at xq + t * xq_stride + b * MM_KX_REC;
 * token-tiled layout: tiles of MM_XT tokens (the last padded with zero tokens),
 * super-block b of token t at xq + ((t / MM_XT * nb + b) * MM_XT + t % MM_XT) * MM_KX_REC. */
#define MM_KX_REC 384
#define MM_KX_FX 256 /* offset of fx[16] in a record */
#define MM_KX_D 320  /* offset of d */

static inline int mm_is_k(int wtype)
{
	return wtype == QTYPE_Q4_K || wtype == QTYPE_Q5_K || wtype == QTYPE_Q6_K;
}

/* Elements per sub-block (group of fx) of a K-quant weight type. */
static inline int mm_k_group(int wtype)
{
	return wtype == QTYPE_Q6_K ? 16 : 32;
}

/* The record of super-block b of token t. */
static inline uint8_t *mm_kx_rec(const struct mm_args *a, int t, int b)
{
	if (a->xtiled)
		return a->xq + ((size_t)(t / MM_XT) * a->nb * MM_XT + (size_t)b * MM_XT + t % MM_XT) * MM_KX_REC;
	return a->xq + (size_t)t * a->xq_stride + (size_t)b * MM_KX_REC;
}

/* A K-quant super-block unpacked (portable kernels, tests of the SIMD unpacks):
 * x[e] = d * sc[e / g] * q[e] - dm * m[e / g], g = 256 / ng. */
struct mm_kq_block {
	uint8_t q[256]; /* 0 .. 15 (Q4_K), 31 (Q5_K), 63 (Q6_K) */
	int sc[16], m[16];
	int ng;         /* sub-blocks: 8 or 16 */
	float d, dm;
};

/* Unpack super-block b of a row of wtype: mm_kq_scales sets sc, m, ng, d, dm;
 * mm_kq_unpack also the quants. */
void mm_kq_scales(int wtype, const uint8_t *row, int b, struct mm_kq_block *out);
void mm_kq_unpack(int wtype, const uint8_t *row, int b, struct mm_kq_block *out);

/* The 8 6-bit scales and 8 mins of a Q4_K / Q5_K block header (scales[12]),
 * one per byte, sub-block j in byte j. */
static inline void mm_kq_scales8(const uint8_t *scales, uint64_t *sc, uint64_t *m)
{
	uint32_t u0, u1, u2;
	memcpy(&u0, scales, 4);
	memcpy(&u1, scales + 4, 4);
	memcpy(&u2, scales + 8, 4);
	/* j < 4: the low 6 bits of bytes j (scale), j + 4 (min); j >= 4: a nibble
	 * of byte j + 4, and the top 2 bits of bytes j - 4 (scale), j (min) */
	uint32_t s_lo = u0 & 0x3f3f3f3f, m_lo = u1 & 0x3f3f3f3f;
	uint32_t s_hi = (u2 & 0x0f0f0f0f) | (u0 >> 2 & 0x30303030);
	uint32_t m_hi = (u2 >> 4 & 0x0f0f0f0f) | (u1 >> 2 & 0x30303030);
	*sc = s_lo | (uint64_t)s_hi << 32;
	*m = m_lo | (uint64_t)m_hi << 32;
}

/* Bytes of a super-block of a K-quant type; offsets of its fields. */
static inline size_t mm_kq_bytes(int wtype)
{
	return wtype == QTYPE_Q4_K ? sizeof(block_q4_K) : wtype == QTYPE_Q5_K ? sizeof(block_q5_K)
									   : sizeof(block_q6_K);
}

/* Quantize token row t of a->x into the scratch (pads with zeros); a token
 * t >= n_tok (tiled layout only) is all zeros. */
typedef void mm_quant_fn(const struct mm_args *a, int t);
/* Compute y[t][r] for rows r0 <= r < r1 and every token. */
typedef void mm_rows_fn(const struct mm_args *a, int r0, int r1);

/* One ISA's kernels; a NULL entry falls back to the generic one. */
struct mm_isa {
	mm_quant_fn *quant;          /* activations -> int8 blocks (Q8_0, Q4_0) */
	mm_quant_fn *quant_k;        /* activations -> K-quant records; NULL: the generic one */
	mm_rows_fn *rows[QTYPE_COUNT];
	int tile_min_tok;            /* token-tiled activations from this many tokens; 0 never */
	int tile_min_tok_k;          /* the same for K-quant weights */
};

extern const struct mm_isa mm_isa_generic, mm_isa_avx2, mm_isa_avx512;
/* The 256-bit VNNI variant of one-token Q8_0 / Q4_0 products (matmul_avx512.c):
 * for the matrix-vector plan only. */
extern const struct mm_isa mm_isa_vnni256;

/* The portable quantizers: d = amax / 127, q = nearest-even(x / d). */
void mm_quant_generic(const struct mm_args *a, int t);
void mm_quant_k_generic(const struct mm_args *a, int t);

#endif
