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
	QTYPE_BF16 = 30,
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

struct qtype_traits {
	const char *name;   /* "f32", "q8_0", ... as in GGUF tooling */
	int blck_size;      /* elements per block (1 for float types) */
	size_t type_size;   /* bytes per block */
	bool is_quantized;
	/* scalar reference conversions; n must be a multiple of blck_size */
	void (*to_float)(const void *src, float *dst, int64_t n);
	void (*from_float)(const float *src, void *dst, int64_t n);
};

/* Traits of a type, or NULL when the id is unknown or the type is not supported. */
const struct qtype_traits *qtype_traits(int type);
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
