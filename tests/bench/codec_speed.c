/* codec_speed.c — encode and decode speed of the compressed KV dtypes
 * (common/kvcodec.h) on one core, in GB/s of f16-equivalent data (2 bytes per
 * value), over the layers of a real cache; built and run by codec.sh:
 *   codec_speed CACHE.kvc    (any dtype; it is decoded to f32 first) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kvc.h"
#include "kvcodec.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	struct kvc_reader *r;
	const struct kvc_header *h;
	if (argc != 2 || kvc_reader_open_file(&r, argv[1]) || kvc_reader_next_header(r, &h)) {
		fprintf(stderr, "usage: codec_speed CACHE.kvc (%s)\n", argc == 2 ? kb_error() : "");
		return 1;
	}
	const int n = h->n_tokens, kvd = h->n_kv_head * h->head_dim, L = h->n_layer;
	float *k = malloc(sizeof(float) * (size_t)L * n * kvd), *v = malloc(sizeof(float) * (size_t)L * n * kvd);
	for (int l = 0; l < L; l++)
		if (kvc_reader_layer(r, k + (size_t)l * n * kvd, v + (size_t)l * n * kvd, kvd) != l)
			return 1;
	const double f16 = 4.0 * n * kvd * L; /* K and V, 2 bytes each */
	for (int bits = 8; bits >= 2; bits = bits == 8 ? 4 : bits - 1) {
		size_t cap = kvcodec_bound(bits, n, kvd), len = 0, total = 0;
		unsigned char *buf = malloc(cap * L), *at[4096];
		size_t lens[4096];
		double best_e = 1e9, best_d = 1e9;
		for (int rep = 0; rep < 5; rep++) {
			double t0 = now();
			total = 0;
			for (int l = 0; l < L; l++) {
				at[l] = buf + cap * l;
				if (kvcodec_encode(bits, k + (size_t)l * n * kvd, v + (size_t)l * n * kvd, kvd, n, kvd, at[l], cap, &len))
					return 1;
				lens[l] = len, total += len;
			}
			double t1 = now();
			for (int l = 0; l < L; l++)
				if (kvcodec_decode(bits, at[l], lens[l], n, kvd, k + (size_t)l * n * kvd, v + (size_t)l * n * kvd, kvd))
					return 1;
			double t2 = now();
			best_e = t1 - t0 < best_e ? t1 - t0 : best_e;
			best_d = t2 - t1 < best_d ? t2 - t1 : best_d;
		}
		printf("kv%d\t%.2f\t%.2f\t%.2f\n", bits, f16 / total, f16 / best_e / 1e9, f16 / best_d / 1e9);
		free(buf);
	}
	return 0;
}
