/* quant.h — tensor element types, their block layouts and the traits table.
 *
 * Type ids are GGUF's (ggml's) numbers, so a tensor's type field is used as is.
 * The enum only ever grows; a type that is listed but has no traits entry
 * (to_float == NULL) is "known but unsupported" and is refused by name.
 *
 * Block layouts follow the GGUF spec (ggml-common.h): a quantized row of n
 * elements is n / blck_size blocks of type_size bytes.
 */
#ifndef KB_QUANT_H
#define KB_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum qtype {
	QTYPE_F32 = 0,
	QTYPE_F16 = 1,
	QTYPE_Q4_0 = 2,
	QTYPE_Q4_1 = 3,
	/* 4, 5: q4_2, q4_3, removed from ggml */
	QTYPE_Q5_0 = 6,
	QTYPE_Q5_1 = 7,
	QTYPE_Q8_0 = 8,
	QTYPE_Q8_1 = 9,
	QTYPE_Q2_K = 10,
	QTYPE_Q3_K = 11,
	QTYPE_Q4_K = 12,
	QTYPE_Q5_K = 13,
	QTYPE_Q6_K = 14,
	QTYPE_Q8_K = 15,
	QTYPE_IQ2_XXS = 16,
	QTYPE_IQ2_XS = 17,
	QTYPE_IQ3_XXS = 18,
	QTYPE_IQ1_S = 19,
	QTYPE_IQ4_NL = 20,
	QTYPE_IQ3_S = 21,
	QTYPE_IQ2_S = 22,
	QTYPE_IQ4_XS = 23,
	QTYPE_I8 = 24,
	QTYPE_I16 = 25,
	QTYPE_I32 = 26,
	QTYPE_I64 = 27,
	QTYPE_F64 = 28,
	QTYPE_IQ1_M = 29,
	QTYPE_BF16 = 30,
	/* 31-33: q4_0_4_4, q4_0_4_8, q4_0_8_8, removed from ggml */
	QTYPE_TQ1_0 = 34,
	QTYPE_TQ2_0 = 35,
	/* 36-38: iq4_nl_4_4, iq4_nl_4_8, iq4_nl_8_8, removed from ggml */
	QTYPE_MXFP4 = 39,
	QTYPE_COUNT = 40, /* bound for tables; not a type */
};

#define QK8_0 32
#define QK4_0 32

/* Q8_0: 32 int8 quants and one fp16 scale: x[i] = d * qs[i]. */
typedef struct {
	uint16_t d;       /* fp16 scale */
	int8_t qs[QK8_0]; /* quants */
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 layout");

/* Q4_0: 32 4-bit quants and one fp16 scale: x[i] = d * (q[i] - 8);
 * byte j holds element j in its low nibble and element j + 16 in its high nibble. */
typedef struct {
	uint16_t d;
	uint8_t qs[QK4_0 / 2];
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 layout");

/* ---- K-quants: super-blocks of QK_K = 256 elements ----
 * Layouts are GGUF's (ggml-common.h), byte for byte; fp16 fields are 2-byte
 * aligned in every block (all sizes are even), so they may be read in place. */
#define QK_K 256
#define K_SCALE_SIZE 12

/* Q4_K: 8 sub-blocks of 32, x = d * sc[j] * q - dmin * m[j], q in [0, 15].
 * scales: the 8 6-bit scales sc[j] and 8 6-bit mins m[j] packed in 12 bytes:
 *   j < 4:  sc[j] = scales[j] & 63,  m[j] = scales[j + 4] & 63
 *   j >= 4: sc[j] = scales[j + 4] & 15 | (scales[j - 4] >> 6) << 4,
 *           m[j]  = scales[j + 4] >> 4 | (scales[j] >> 6) << 4
 * qs: byte 32 * k + l holds element l of sub-block 2k in its low nibble and
 * element l of sub-block 2k + 1 in its high nibble (k < 4, l < 32). */
typedef struct {
	uint16_t d;                  /* fp16 super-block scale of the scales */
	uint16_t dmin;               /* fp16 super-block scale of the mins */
	uint8_t scales[K_SCALE_SIZE];
	uint8_t qs[QK_K / 2];
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K layout");

/* Q5_K: as Q4_K with a fifth bit, q in [0, 31]: element l of sub-block j has
 * its high bit in bit j of qh[l] (l < 32). */
typedef struct {
	uint16_t d;
	uint16_t dmin;
	uint8_t scales[K_SCALE_SIZE];
	uint8_t qh[QK_K / 8];
	uint8_t qs[QK_K / 2];
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K layout");

/* Q6_K: 16 sub-blocks of 16, x = d * scales[j] * (q - 32), q in [0, 63], the
 * scales signed 8-bit. In each half h (128 elements: ql[64 h ..], qh[32 h ..]),
 * for l < 32, element 128 h + 32 i + l (i < 4) has
 *   low 4 bits: ql[64 h + l + 32 (i & 1)], low nibble for i < 2, high for i >= 2
 *   high 2 bits: bits 2i, 2i + 1 of qh[32 h + l]. */
typedef struct {
	uint8_t ql[QK_K / 2];
	uint8_t qh[QK_K / 4];
	int8_t scales[QK_K / 16];
	uint16_t d;
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K layout");

/* The 6-bit scale and min of sub-block j (< 8) of a Q4_K / Q5_K block. */
static inline void kq_scale_min(const uint8_t *scales, int j, int *sc, int *m)
{
	if (j < 4) {
		*sc = scales[j] & 63;
		*m = scales[j + 4] & 63;
	} else {
		*sc = (scales[j + 4] & 15) | (scales[j - 4] >> 6) << 4;
		*m = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4;
	}
}

struct qtype_traits {
	const char *name;   /* "f32", "q8_0", ... as in GGUF tooling */
	int blck_size;      /* elements per block (1 for float types) */
	size_t type_size;   /* bytes per block */
	bool is_quantized;  /* blocks of quants and scales */
	bool is_data;       /* plain numbers (i8 .. i64, f64), not weights: never converted */
	/* scalar reference conversions; n must be a multiple of blck_size
	 * (NULL: a type known by its geometry only, which no kernel computes with) */
	void (*to_float)(const void *src, float *dst, int64_t n);
	void (*from_float)(const float *src, void *dst, int64_t n);
};

/* Traits of a supported type (one with conversions), or NULL when the id is
 * unknown or the type is not supported. */
const struct qtype_traits *qtype_traits(int type);
/* Traits of any type id GGUF defines, supported or not (its name and block
 * geometry, so a file holding it can be read and sized), or NULL. */
const struct qtype_traits *qtype_info(int type);
/* Name of any type id ("q4_1"; "type 99" style names for unknown ids go to buf). */
const char *qtype_name(int type);
/* Type from its name ("q8_0", "F16"; case-insensitive); -1 if none. */
int qtype_from_name(const char *name);
/* Bytes of a row of n elements (n a multiple of the block size). */
size_t qtype_row_size(int type, int64_t n);

/* Scalar fp16 / bf16 conversions (round to nearest even; NaN kept). */
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);

#endif
