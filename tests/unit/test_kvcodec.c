/* test_kvcodec.c — the compressed KV payloads (common/kvcodec.h):
 *
 *   - every decoded value within its group's bound (half a step plus the f16
 *     rounding of the minimum), for 8, 4, 3 and 2 bits, on data whose channels
 *     have scales and offsets of their own (as keys do), odd shapes included
 *     (rows and kv_dim not multiples of the group);
 *   - constant groups decode exactly; sizes shrink with the bits;
 *   - hostile payloads (truncations, wrong lengths, flipped bytes, another
 *     frame) give KB_ERR_FORMAT with a message, never a crash or an over-read;
 *   - on a real cache (stories260K, when ../shared is there): kv8's error
 *     below q8_0's, and the bytes per value of each width.
 */
#include <math.h>

#include "kvc.h"
#include "kvcodec.h"
#include "model.h"
#include "quant.h"
#include "tap.h"

static int randi(int n)
{
	int r = (int)tap_randf(0, (float)n);
	return r < n ? r : n - 1;
}

/* rows x kv_dim values; channel c has its own scale and offset (keys' outlier channels) */
static float *make(int rows, int kv_dim, int smooth)
{
	float *x = malloc((size_t)rows * kv_dim * sizeof *x);
	float *scale = malloc((size_t)kv_dim * sizeof *scale), *off = malloc((size_t)kv_dim * sizeof *off);
	for (int c = 0; c < kv_dim; c++)
		scale[c] = tap_randf(0.1f, c % 7 == 0 ? 20.0f : 2.0f), off[c] = tap_randf(-3, 3);
	for (int t = 0; t < rows; t++)
		for (int c = 0; c < kv_dim; c++) {
			float prev = t ? x[(size_t)(t - 1) * kv_dim + c] : off[c];
			x[(size_t)t * kv_dim + c] = smooth ? prev + 0.05f * scale[c] * tap_randf(-1, 1)
							   : off[c] + scale[c] * tap_randf(-1, 1);
		}
	free(scale), free(off);
	return x;
}

/* Every value of k (per channel, token groups) and v (per token, channel groups)
 * against its group's bound; returns the count over it. */
static int over_bound(int bits, const float *x, const float *y, int rows, int kv_dim, int per_channel)
{
	int bad = 0;
	const int G = KVCODEC_GROUP;
	if (per_channel) {
		for (int t0 = 0; t0 < rows; t0 += G)
			for (int c = 0; c < kv_dim; c++) {
				int n = rows - t0 < G ? rows - t0 : G;
				float lo = INFINITY, hi = -INFINITY;
				for (int t = t0; t < t0 + n; t++)
					lo = fminf(lo, x[(size_t)t * kv_dim + c]), hi = fmaxf(hi, x[(size_t)t * kv_dim + c]);
				double b = kvcodec_max_error(bits, lo, hi);
				for (int t = t0; t < t0 + n; t++)
					bad += fabs(y[(size_t)t * kv_dim + c] - x[(size_t)t * kv_dim + c]) > b;
			}
	} else {
		for (int t = 0; t < rows; t++)
			for (int c0 = 0; c0 < kv_dim; c0 += G) {
				int n = kv_dim - c0 < G ? kv_dim - c0 : G;
				const float *r = x + (size_t)t * kv_dim + c0;
				float lo = INFINITY, hi = -INFINITY;
				for (int c = 0; c < n; c++)
					lo = fminf(lo, r[c]), hi = fmaxf(hi, r[c]);
				double b = kvcodec_max_error(bits, lo, hi);
				for (int c = 0; c < n; c++)
					bad += fabs(y[(size_t)t * kv_dim + c0 + c] - r[c]) > b;
			}
	}
	return bad;
}

static void test_bounds(void)
{
	static const int shapes[][2] = { { 1, 8 }, { 17, 64 }, { 64, 64 }, { 100, 96 }, { 130, 576 / 3 }, { 5, 200 } };
	static const int widths[] = { 8, 4, 3, 2 };
	for (size_t w = 0; w < 4; w++) {
		const int bits = widths[w];
		int bad = 0, failed = 0;
		for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
			const int rows = shapes[s][0], kvd = shapes[s][1];
			float *k = make(rows, kvd, 0), *v = make(rows, kvd, 0);
			float *k2 = malloc((size_t)rows * kvd * sizeof *k2), *v2 = malloc((size_t)rows * kvd * sizeof *v2);
			size_t cap = kvcodec_bound(bits, rows, kvd), len;
			uint8_t *buf = malloc(cap);
			failed += kvcodec_encode(bits, k, v, (size_t)kvd, rows, kvd, buf, cap, &len) != KB_OK;
			failed += kvcodec_decode(bits, buf, len, rows, kvd, k2, v2, (size_t)kvd) != KB_OK;
			bad += over_bound(bits, k, k2, rows, kvd, 1) + over_bound(bits, v, v2, rows, kvd, 0);
			free(k), free(v), free(k2), free(v2), free(buf);
		}
		ok(failed == 0 && bad == 0, "kv%d: every value of 6 shapes within its group's bound (%d over)", bits, bad);
	}
	/* a constant channel and a constant token decode exactly */
	float k[3 * 4] = { 1.5f, 2, 3, 4, 1.5f, 5, 6, 7, 1.5f, 8, 9, 10 }, v[3 * 4] = { 7, 7, 7, 7 };
	float k2[12], v2[12];
	uint8_t buf[4096];
	size_t len;
	ASSERT(kvcodec_encode(4, k, v, 4, 3, 4, buf, sizeof buf, &len) == KB_OK);
	ok(kvcodec_decode(4, buf, len, 3, 4, k2, v2, 4) == KB_OK && k2[0] == 1.5f && k2[4] == 1.5f && k2[8] == 1.5f &&
	   v2[0] == 7 && v2[3] == 7, "a constant group decodes exactly");
	ok(kvcodec_encode(5, k, v, 4, 3, 4, buf, sizeof buf, &len) == KB_ERR_ARG, "5 bits is refused: %s", kb_error());
}

static void test_sizes(void)
{
	const int rows = 256, kvd = 192;
	float *k = make(rows, kvd, 1), *v = make(rows, kvd, 0);
	size_t prev = SIZE_MAX;
	bool shrink = true;
	char line[200] = "";
	for (int bits = 8; bits >= 2; bits = bits == 8 ? 4 : bits - 1) {
		size_t cap = kvcodec_bound(bits, rows, kvd), len;
		uint8_t *buf = malloc(cap);
		ASSERT(kvcodec_encode(bits, k, v, kvd, rows, kvd, buf, cap, &len) == KB_OK);
		shrink &= len < prev;
		prev = len;
		snprintf(line + strlen(line), sizeof line - strlen(line), " kv%d %.2f", bits, 8.0 * len / (2.0 * rows * kvd));
		free(buf);
	}
	ok(shrink, "payloads shrink with the bits; bits per value:%s", line);
	free(k), free(v);
}

static void test_hostile(void)
{
	const int rows = 40, kvd = 64, bits = 4;
	float *k = make(rows, kvd, 0), *v = make(rows, kvd, 0);
	float *k2 = malloc((size_t)rows * kvd * sizeof *k2), *v2 = malloc((size_t)rows * kvd * sizeof *v2);
	size_t cap = kvcodec_bound(bits, rows, kvd), len;
	uint8_t *buf = malloc(cap);
	ASSERT(kvcodec_encode(bits, k, v, kvd, rows, kvd, buf, cap, &len) == KB_OK);
	int wrong = 0;
	for (size_t n = 0; n < len; n++) {
		uint8_t *t = malloc(n ? n : 1); /* exactly n bytes: ASan sees any over-read */
		memcpy(t, buf, n);
		wrong += kvcodec_decode(bits, t, n, rows, kvd, k2, v2, kvd) != KB_ERR_FORMAT;
		free(t);
	}
	ok(wrong == 0, "each of %zu truncations: KB_ERR_FORMAT", len);
	uint8_t *t = malloc(len);
	int crashes = 0, fine = 0;
	for (int i = 0; i < 3000; i++) {
		memcpy(t, buf, len);
		for (int f = 0; f < 1 + i % 4; f++)
			t[randi((int)len)] ^= (uint8_t)(1 + randi(255));
		int rc = kvcodec_decode(bits, t, len, rows, kvd, k2, v2, kvd);
		crashes += rc != KB_OK && rc != KB_ERR_FORMAT;
		fine += rc == KB_OK;
	}
	ok(crashes == 0, "3000 mutated payloads: decoded or KB_ERR_FORMAT (%d decoded: zstd frames carry no checksum; "
	   "the .kvc layer CRC catches those)", fine);
	memcpy(t, buf, len);
	ok(kvcodec_decode(bits, t, len, rows + 1, kvd, k2, v2, kvd) == KB_ERR_FORMAT && strstr(kb_error(), "wrong size"),
	   "a payload of another shape: %s", kb_error());
	t[0] ^= 1;
	ok(kvcodec_decode(bits, t, len, rows, kvd, k2, v2, kvd) == KB_ERR_FORMAT && strstr(kb_error(), "do not fill"),
	   "lengths that do not add up: %s", kb_error());
	free(t), free(buf), free(k), free(v), free(k2), free(v2);
}

/* A real cache: stories260K over a story's tokens; kv8 against q8_0. */
static void test_real(void)
{
	const char *path = tap_shared("models/stories260Ktok512.gguf");
	if (!path) {
		skip("../shared/models/stories260Ktok512.gguf is absent");
		return;
	}
	struct model *m;
	ASSERT(model_load(&m, path) == KB_OK);
	enum { N = 200 };
	struct kv_cache kv;
	struct model_ws ws;
	int32_t tok[N], pos[N];
	for (int i = 0; i < N; i++)
		tok[i] = i ? 3 + (i * 37) % 500 : 1, pos[i] = i;
	ASSERT(kv_cache_init(&kv, m, N) == KB_OK && model_ws_init(&ws, m, N, N) == KB_OK);
	ASSERT(model_forward(m, &ws, &kv, tok, pos, N, NULL, false) == KB_OK);
	const int kvd = kv.kv_dim;
	double e8 = 0, eq = 0, norm = 0, bytes[9] = { 0 };
	float *k2 = malloc((size_t)N * kvd * sizeof *k2), *v2 = malloc((size_t)N * kvd * sizeof *v2);
	float *qrow = malloc((size_t)kvd * sizeof *qrow);
	block_q8_0 *qb = malloc((size_t)kvd / QK8_0 * sizeof *qb);
	const struct qtype_traits *q8 = qtype_traits(QTYPE_Q8_0);
	for (int bits = 2; bits <= 8; bits++) {
		if (bits > 4 && bits < 8)
			continue;
		for (int l = 0; l < kv.n_layer; l++) {
			size_t cap = kvcodec_bound(bits, N, kvd), len;
			uint8_t *buf = malloc(cap);
			ASSERT(kvcodec_encode(bits, kv_k(&kv, l, 0), kv_v(&kv, l, 0), kvd, N, kvd, buf, cap, &len) == KB_OK);
			ASSERT(kvcodec_decode(bits, buf, len, N, kvd, k2, v2, kvd) == KB_OK);
			bytes[bits] += len;
			if (bits == 8)
				for (int half = 0; half < 2; half++) {
					const float *x = half ? kv_v(&kv, l, 0) : kv_k(&kv, l, 0), *y = half ? v2 : k2;
					for (int t = 0; t < N; t++) {
						q8->from_float(x + (size_t)t * kvd, qb, kvd);
						q8->to_float(qb, qrow, kvd);
						for (int c = 0; c < kvd; c++) {
							double a = x[(size_t)t * kvd + c];
							e8 += (y[(size_t)t * kvd + c] - a) * (y[(size_t)t * kvd + c] - a);
							eq += (qrow[c] - a) * (qrow[c] - a);
							norm += a * a;
						}
					}
				}
			free(buf);
		}
	}
	const double values = 2.0 * N * kvd * kv.n_layer;
	ok(e8 < eq, "stories260K, %d tokens: kv8's error below q8_0's (rms %.3g against %.3g of the values' %.3g)", N,
	   sqrt(e8 / values), sqrt(eq / values), sqrt(norm / values));
	diag("stories260K bits per value: kv8 %.2f kv4 %.2f kv3 %.2f kv2 %.2f (f16 16, q8_0 8.5)", 8 * bytes[8] / values,
	     8 * bytes[4] / values, 8 * bytes[3] / values, 8 * bytes[2] / values);
	free(k2), free(v2), free(qrow), free(qb);
	model_ws_free(&ws);
	kv_cache_free(&kv);
	model_free(m);
}

int main(void)
{
	tap_seed();
	test_bounds();
	test_sizes();
	test_hostile();
	test_real();
	return done_testing();
}
