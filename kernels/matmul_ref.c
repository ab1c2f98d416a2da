/* matmul_ref.c — the scalar reference matrix multiplication: dequantize each
 * weight row with the type's to_float and dot it with x in double. */
#include "kernels.h"
#include "util.h"

/* Elements dequantized at a time: a multiple of every block size (K-quants: 256). */
#define REF_CHUNK 256

void kern_matmul_ref(float *y, const float *x, const void *w, int wtype,
		     int n_tok, int n_in, int n_out)
{
	const struct qtype_traits *tr = qtype_traits(wtype);
	ASSERT(tr && n_in % tr->blck_size == 0);
	size_t row_size = qtype_row_size(wtype, n_in);
	float tmp[REF_CHUNK];

	for (int t = 0; t < n_tok; t++) {
		const float *xt = x + (size_t)t * n_in;
		for (int o = 0; o < n_out; o++) {
			const uint8_t *row = (const uint8_t *)w + (size_t)o * row_size;
			double sum = 0;
			for (int i0 = 0; i0 < n_in; i0 += REF_CHUNK) {
				int n = n_in - i0 < REF_CHUNK ? n_in - i0 : REF_CHUNK;
				tr->to_float(row + qtype_row_size(wtype, i0), tmp, n);
				for (int i = 0; i < n; i++)
					sum += (double)tmp[i] * xt[i0 + i];
			}
			y[(size_t)t * n_out + o] = (float)sum;
		}
	}
}
