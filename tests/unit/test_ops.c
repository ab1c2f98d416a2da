/* test_ops.c — RMSNorm, LayerNorm, RoPE, softmax, SwiGLU, GELU and attention (APE too): every variant this
 * CPU runs against the scalar reference on random data (normalized error), plus
 * known answers that hold for every variant, the reference included.
 *
 *   test_ops            the TAP tests (KVBLEND_SEED=n replays a run)
 *   test_ops --bench    time attention, reference vs each variant
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"
#include "quant.h"
#include "tap.h"
#include "util.h"

static const char *const levels[] = { "ref", "generic", "avx2", "avx512" };

static float *randv(long n, float lo, float hi)
{
	float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
	ASSERT(x);
	for (long i = 0; i < n; i++)
		x[i] = tap_randf(lo, hi);
	return x;
}

static float *dupv(const float *x, long n)
{
	float *y = malloc((size_t)(n > 0 ? n : 1) * sizeof *y);
	ASSERT(y);
	memcpy(y, x, (size_t)n * sizeof *y);
	return y;
}

static int randi(int n) /* uniform in [0, n) */
{
	int r = (int)tap_randf(0.0f, (float)n);
	return r < n ? r : n - 1;
}

static void shuffle(int32_t *p, int n)
{
	for (int i = n - 1; i > 0; i--) {
		int j = randi(i + 1);
		int32_t t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
}

/* ================= RMSNorm ================= */

/* float sum of squares and float scaling vs double: ~1e-7 observed;
 * 1e-6 leaves room for n = 4096 and still catches any real slip. */
#define TOL_RMSNORM 1e-6

static void cmp_rmsnorm(const char *isa)
{
	static const int shapes[][2] = { { 1, 1 }, { 3, 7 }, { 5, 17 }, { 2, 64 }, { 7, 576 },
					 { 4, 1001 }, { 64, 576 }, { 1, 4096 } };
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int rows = shapes[s][0], n = shapes[s][1];
		float *x = randv((long)rows * n, -2, 2), *w = randv(n, -1.5f, 1.5f);
		float *y0 = randv((long)rows * n, 0, 1), *y1 = randv((long)rows * n, 0, 1);
		kern_rmsnorm_ref(y0, x, w, rows, n, 1e-5f);
		kern_rmsnorm(y1, x, w, rows, n, 1e-5f);
		double e = tap_nerr(y1, y0, (long)rows * n);
		ok(e < TOL_RMSNORM, "%s rmsnorm %dx%d vs ref: nerr %.2g", isa, rows, n, e);
		kern_rmsnorm(x, x, w, rows, n, 1e-5f); /* in place */
		ok(memcmp(x, y1, (size_t)rows * n * sizeof *x) == 0, "%s rmsnorm %dx%d in place", isa, rows, n);
		free(x), free(w), free(y0), free(y1);
	}
}

static void kat_rmsnorm(const char *isa)
{
	float x[2] = { 3, 4 }, w[2] = { 1, -2 }, y[2];
	kern_rmsnorm(y, x, w, 1, 2, 0.0f); /* rms = sqrt(12.5) */
	float r = sqrtf(12.5f);
	ok(fabsf(y[0] - 3 / r) < 1e-6f && fabsf(y[1] + 8 / r) < 1e-6f,
	   "%s rmsnorm [3 4] * [1 -2] = [%g %g]", isa, y[0], y[1]);
}

/* ================= LayerNorm ================= */

/* Float sums vs double, as RMSNorm; rows offset by a large mean (BERT's residual
 * stream drifts) check the variance is taken about the mean, not as E[x^2] - m^2. */
#define TOL_LAYERNORM 2e-6

static void cmp_layernorm(const char *isa)
{
	static const int shapes[][2] = { { 1, 1 }, { 3, 7 }, { 5, 17 }, { 2, 64 }, { 7, 384 },
					 { 4, 1001 }, { 64, 384 }, { 1, 4096 } };
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int rows = shapes[s][0], n = shapes[s][1];
		float off = s % 2 ? 30.0f : 0.0f;
		float *x = randv((long)rows * n, off - 2, off + 2), *w = randv(n, 0.5f, 1.5f), *b = randv(n, -0.1f, 0.1f);
		float *y0 = randv((long)rows * n, 0, 1), *y1 = randv((long)rows * n, 0, 1);
		kern_layernorm_ref(y0, x, w, b, rows, n, 1e-12f);
		kern_layernorm(y1, x, w, b, rows, n, 1e-12f);
		double e = tap_nerr(y1, y0, (long)rows * n);
		ok(e < TOL_LAYERNORM, "%s layernorm %dx%d (mean %g) vs ref: nerr %.2g", isa, rows, n, off, e);
		kern_layernorm(x, x, w, b, rows, n, 1e-12f); /* in place */
		ok(memcmp(x, y1, (size_t)rows * n * sizeof *x) == 0, "%s layernorm %dx%d in place", isa, rows, n);
		free(x), free(w), free(b), free(y0), free(y1);
	}
}

static void kat_layernorm(const char *isa)
{
	float x[2] = { 3, 5 }, w[2] = { 1, -2 }, b[2] = { 0.5f, 0.25f }, y[2];
	kern_layernorm(y, x, w, b, 1, 2, 0.0f); /* mean 4, sd 1: [-1 1] */
	ok(fabsf(y[0] + 0.5f) < 1e-6f && fabsf(y[1] + 1.75f) < 1e-6f,
	   "%s layernorm [3 5] * [1 -2] + [.5 .25] = [%g %g]", isa, y[0], y[1]);
}

/* ================= RoPE ================= */

/* Same cos/sin as the reference, rotation in float vs double: ~1e-7. */
#define TOL_ROPE 1e-6

static float *inv_freq(int n_rot, float base)
{
	float *f = malloc((size_t)(n_rot / 2 + 1) * sizeof *f);
	ASSERT(f);
	for (int i = 0; i < n_rot / 2; i++)
		f[i] = powf(base, -2.0f * i / n_rot);
	return f;
}

static void cmp_rope(const char *isa)
{
	/* n_tok, n_head, head_dim, n_rot: odd counts, partial rotation, > 64 pairs */
	static const int shapes[][4] = { { 1, 1, 2, 2 }, { 3, 2, 8, 8 }, { 5, 3, 10, 6 },
					 { 4, 9, 64, 64 }, { 7, 3, 64, 32 }, { 3, 4, 128, 128 },
					 { 2, 2, 256, 256 }, { 2, 2, 200, 130 }, { 33, 9, 64, 64 },
					 { 300, 3, 64, 64 }, { 150, 2, 128, 96 } };
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int nt = shapes[s][0], nh = shapes[s][1], hd = shapes[s][2], nr = shapes[s][3];
		for (int mode = KERN_ROPE_NORM; mode <= KERN_ROPE_NEOX; mode += 2) {
			long n = (long)nt * nh * hd;
			float *x0 = randv(n, -3, 3), *x1 = dupv(x0, n), *f = inv_freq(nr, 10000.0f);
			int32_t *pos = malloc((size_t)nt * sizeof *pos);
			/* random positions; a run from near 2^17 (prefill: angles step);
			 * runs of one delta (blend moving chunks) */
			int base = nt > 8 ? 131072 - nt - randi(1000) : -1;
			for (int t = 0; t < nt; t++)
				pos[t] = base >= 0 ? base + t : randi(131072);
			for (int t = 0; nt >= 100 && t < nt; t++)
				pos[t] = t < nt / 2 ? pos[t] : t < 3 * nt / 4 ? -5000 : 70000;
			struct kern_rope r = { .mode = mode, .n_rot = nr, .inv_freq = f };
			kern_rope_ref(x0, pos, nt, nh, hd, &r);
			kern_rope(x1, pos, nt, nh, hd, &r);
			double e = tap_nerr(x1, x0, n);
			ok(e < TOL_ROPE, "%s rope %s tok %d head %d hd %d rot %d vs ref: nerr %.2g", isa,
			   mode ? "neox" : "norm", nt, nh, hd, nr, e);
			free(x0), free(x1), free(f), free(pos);
		}
	}
}

/* NORM and NEOX on a hand example: pair 0 turns by 90 degrees, pair 1 by 180. */
static void kat_rope_pairs(const char *isa)
{
	const float f[2] = { (float)(M_PI / 2), (float)M_PI };
	const int32_t pos = 1;
	static const float want[2][6] = { { -2, 1, -3, -4, 5, 6 },   /* (x0,x1), (x2,x3) */
					  { -3, -2, 1, -4, 5, 6 } }; /* (x0,x2), (x1,x3) */
	for (int m = 0; m < 2; m++) {
		float x[6] = { 1, 2, 3, 4, 5, 6 };
		struct kern_rope r = { .mode = m ? KERN_ROPE_NEOX : KERN_ROPE_NORM, .n_rot = 4, .inv_freq = f };
		kern_rope(x, &pos, 1, 1, 6, &r);
		double err = 0;
		for (int i = 0; i < 6; i++)
			err = fmax(err, fabs(x[i] - want[m][i]));
		ok(err < 1e-6 && x[4] == 5 && x[5] == 6, "%s rope %s hand example [%g %g %g %g %g %g]", isa,
		   m ? "neox" : "norm", x[0], x[1], x[2], x[3], x[4], x[5]);
	}
}

/* Rotations compose: R(-d) R(d) = I and R(b) R(a) = R(a + b), at positions up
 * to 2^17. A float angle would be off by ~1e-2 rad there; float-rounded cos/sin
 * of an exact angle leave ~1e-7. */
#define TOL_ROPE_GROUP 2e-6

static void kat_rope_group(const char *isa)
{
	const int nt = 6, nh = 3, hd = 64;
	const long n = (long)nt * nh * hd;
	for (int mode = KERN_ROPE_NORM; mode <= KERN_ROPE_NEOX; mode += 2) {
		float *f = inv_freq(hd, 10000.0f), *x = randv(n, -2, 2), *y = dupv(x, n), *z = dupv(x, n);
		struct kern_rope r = { .mode = mode, .n_rot = hd, .inv_freq = f };
		int32_t a[6], b[6], ab[6], na[6];
		for (int t = 0; t < nt; t++) {
			a[t] = randi(65536);
			b[t] = randi(65536);
			ab[t] = a[t] + b[t];
			na[t] = -a[t];
		}
		kern_rope(y, a, nt, nh, hd, &r);
		kern_rope(y, na, nt, nh, hd, &r);
		double e = tap_nerr(y, x, n);
		ok(e < TOL_ROPE_GROUP, "%s rope %s: R(-d) R(d) = I, nerr %.2g", isa, mode ? "neox" : "norm", e);
		memcpy(y, x, (size_t)n * sizeof *x);
		kern_rope(y, a, nt, nh, hd, &r);
		kern_rope(y, b, nt, nh, hd, &r);
		kern_rope(z, ab, nt, nh, hd, &r);
		e = tap_nerr(y, z, n);
		ok(e < TOL_ROPE_GROUP, "%s rope %s: R(b) R(a) = R(a+b), nerr %.2g", isa, mode ? "neox" : "norm", e);
		free(f), free(x), free(y), free(z);
	}
}

/* ================= softmax, SwiGLU ================= */

/* float exp (libm or a ~2 ulp polynomial) and a float sum vs double: ~1e-7. */
#define TOL_SOFTMAX 1e-6
#define TOL_SWIGLU 1e-6

static void cmp_softmax(const char *isa)
{
	static const int ns[] = { 1, 2, 7, 15, 16, 17, 100, 1000, 49155 };
	for (size_t s = 0; s < sizeof ns / sizeof *ns; s++) {
		int n = ns[s];
		float *x0 = randv(n, -10, 10), *x1 = dupv(x0, n);
		kern_softmax_ref(x0, n);
		kern_softmax(x1, n);
		double e = tap_nerr(x1, x0, n), sum = 0;
		for (int i = 0; i < n; i++)
			sum += x1[i];
		ok(e < TOL_SOFTMAX, "%s softmax n %d vs ref: nerr %.2g", isa, n, e);
		/* float rounding of n terms, each off by ~1e-7 relative */
		ok(fabs(sum - 1) < 1e-5, "%s softmax n %d sums to 1 (%.9f)", isa, n, sum);
		free(x0), free(x1);
	}
}

static void kat_softmax(const char *isa)
{
	float x[2] = { 0, logf(2) }, y[3] = { 1000, 1001, -INFINITY };
	kern_softmax(x, 2);
	ok(fabsf(x[0] - 1 / 3.0f) < 1e-6f && fabsf(x[1] - 2 / 3.0f) < 1e-6f,
	   "%s softmax [0 ln2] = [%g %g]", isa, x[0], x[1]);
	kern_softmax(y, 3); /* no overflow; -inf gets 0 */
	const float e1 = 0.26894142f; /* 1 / (1 + e) */
	ok(fabsf(y[0] - e1) < 1e-6f && fabsf(y[1] - (1 - e1)) < 1e-6f && y[2] < 1e-30f,
	   "%s softmax [1000 1001 -inf] = [%g %g %g]", isa, y[0], y[1], y[2]);
}

static void cmp_swiglu(const char *isa)
{
	static const long ns[] = { 1, 7, 17, 1000, 100003 };
	for (size_t s = 0; s < sizeof ns / sizeof *ns; s++) {
		long n = ns[s];
		float *g = randv(n, -20, 20), *u = randv(n, -2, 2), *y0 = randv(n, 0, 1), *y1 = randv(n, 0, 1);
		kern_swiglu_ref(y0, g, u, n);
		kern_swiglu(y1, g, u, n);
		double e = tap_nerr(y1, y0, n);
		ok(e < TOL_SWIGLU, "%s swiglu n %ld vs ref: nerr %.2g", isa, n, e);
		kern_swiglu(g, g, u, n); /* out aliases gate */
		ok(memcmp(g, y1, (size_t)n * sizeof *g) == 0, "%s swiglu n %ld in place", isa, n);
		free(g), free(u), free(y0), free(y1);
	}
}

static void kat_swiglu(const char *isa)
{
	float g[3] = { 0, 1, 100 }, u[3] = { 5, 1, 0.5f }, y[3];
	kern_swiglu(y, g, u, 3);
	ok(y[0] == 0 && fabsf(y[1] - 0.7310586f) < 1e-6f && fabsf(y[2] - 50) < 1e-5f,
	   "%s swiglu silu(0,1,100) * up = [%g %g %g]", isa, y[0], y[1], y[2]);
}

/* gelu(x) = x s(x) with s in [0, 1]: the error is measured as that of s,
 * max |y - ref| / max(|x|, 1). Far left s is e^-(tens), where the float argument
 * alone moves it by a relative 1e-5 and SIMD exp clamps below e^-87: nothing a
 * relative error of y could judge fairly, nothing that matters absolutely.
 * exp to ~2 ulp and one division vs double tanh: ~1e-7. */
#define TOL_GELU 1e-6

static double gelu_err(const float *y, const float *ref, const float *x, long n)
{
	double e = 0;
	for (long i = 0; i < n; i++) {
		double d = fabs((double)y[i] - ref[i]) / fmax(fabs((double)x[i]), 1.0);
		e = d > e ? d : e;
	}
	return e;
}

static void cmp_gelu(const char *isa)
{
	static const long ns[] = { 1, 7, 17, 1000, 100003 };
	for (size_t s = 0; s < sizeof ns / sizeof *ns; s++) {
		long n = ns[s];
		float *x = randv(n, -12, 12), *y0 = randv(n, 0, 1), *y1 = randv(n, 0, 1);
		kern_gelu_ref(y0, x, n);
		kern_gelu(y1, x, n);
		double e = gelu_err(y1, y0, x, n);
		ok(e < TOL_GELU, "%s gelu n %ld vs ref: error %.2g", isa, n, e);
		kern_gelu(x, x, n); /* in place */
		ok(memcmp(x, y1, (size_t)n * sizeof *x) == 0, "%s gelu n %ld in place", isa, n);
		free(x), free(y0), free(y1);
	}
}

static void kat_gelu(const char *isa)
{
	/* the tanh form at 1: 0.5 (1 + tanh(0.7978846 * 1.044715)) = 0.8411920 (erf form: 0.8413447) */
	float x[4] = { 0, 1, -100, 100 }, y[4];
	kern_gelu(y, x, 4);
	ok(y[0] == 0 && fabsf(y[1] - 0.8411920f) < 1e-6f && fabsf(y[2]) < 1e-30f && fabsf(y[3] - 100) < 1e-5f,
	   "%s gelu (0, 1, -100, 100) = [%g %.7f %g %g]", isa, y[0], y[1], y[2], y[3]);
}

/* ================= attention ================= */

/* Float dots and exp vs double: ~1e-7 observed. 1e-5 catches any real mistake
 * (a wrong mask, head or scale changes the output by O(1)). */
#define TOL_ATT 1e-5

struct att {
	int n_q, n_kv, n_head, n_kv_head, hd, q_stride, kv_stride;
	float *q, *k, *v;
	int32_t *q_pos, *k_pos;
};

/* Random q/k/v; strides padded by pad floats; keys at a shuffled 0..n_kv-1
 * (prefill: in order, queries at the last n_q positions). */
static void att_init(struct att *a, int n_q, int n_kv, int nh, int nkvh, int hd, int pad, int prefill)
{
	*a = (struct att){ .n_q = n_q, .n_kv = n_kv, .n_head = nh, .n_kv_head = nkvh, .hd = hd,
			   .q_stride = nh * hd + pad, .kv_stride = nkvh * hd + pad };
	a->q = randv((long)n_q * a->q_stride, -1, 1);
	a->k = randv((long)n_kv * a->kv_stride, -1, 1);
	a->v = randv((long)n_kv * a->kv_stride, -1, 1);
	a->q_pos = malloc((size_t)n_q * sizeof *a->q_pos);
	a->k_pos = malloc((size_t)n_kv * sizeof *a->k_pos);
	ASSERT(a->q_pos && a->k_pos);
	for (int j = 0; j < n_kv; j++)
		a->k_pos[j] = j;
	for (int i = 0; i < n_q; i++)
		a->q_pos[i] = prefill ? n_kv - n_q + i : randi(n_kv + 4) - 2; /* some see nothing */
	if (!prefill)
		shuffle(a->k_pos, n_kv);
}

static void att_free(struct att *a)
{
	free(a->q), free(a->k), free(a->v), free(a->q_pos), free(a->k_pos);
}

static float *att_out(const struct att *a)
{
	return randv((long)a->n_q * a->q_stride, 0, 1);
}

/* Scratch overruns seen by att_run_ws() (bytes past kern_attention_wsize() written). */
static int ws_overruns;

/* Run the dispatched kernel into out with scratch sized for (n_q, n_kv, n_head)
 * >= the call's, at an odd offset, followed by a guard that must stay intact. */
static void att_run_ws(const struct att *a, float *out, const float *q, int n_q, int n_kv, int n_head)
{
	enum { GUARD = 256 };
	size_t ws = kern_attention_wsize(n_q, n_kv, n_head);
	unsigned char *buf = malloc(ws + 3 + GUARD);
	ASSERT(buf);
	memset(buf + 3 + ws, 0xA5, GUARD);
	kern_attention(out, q, a->q_stride, a->k, a->v, a->kv_stride, a->q_pos, a->k_pos,
		       a->n_q, a->n_kv, a->n_head, a->n_kv_head, a->hd, buf + 3);
	for (int i = 0; i < GUARD; i++)
		ws_overruns += buf[3 + ws + i] != 0xA5;
	free(buf);
}

static void att_run(const struct att *a, float *out, const float *q)
{
	att_run_ws(a, out, q, a->n_q, a->n_kv, a->n_head);
}

/* Scratch sized once for a batch serves every smaller call (the model sizes it
 * for n_batch, n_ctx), with any thread count; and the kernel stays in it. */
static void kat_att_wsize(const char *isa)
{
	static const int shapes[][5] = { /* n_q, n_kv, n_head, n_kv_head, head_dim */
		{ 1, 700, 64, 8, 128 }, { 4, 300, 64, 8, 256 }, { 3, 40, 6, 2, 300 }, { 40, 300, 16, 4, 256 },
	};
	int before = ws_overruns;
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		const int *sh = shapes[s];
		struct att a;
		att_init(&a, sh[0], sh[1], sh[2], sh[3], sh[4], 0, 1);
		float *o0 = att_out(&a), *o1 = att_out(&a);
		kern_attention_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos,
				   a.n_q, a.n_kv, a.n_head, a.n_kv_head, a.hd);
		att_run_ws(&a, o1, a.q, 64, 1024, sh[2]);
		att_run(&a, o1, a.q);
		double e = tap_nerr(o1, o0, (long)a.n_q * a.q_stride);
		ok(e < TOL_ATT, "%s attention q %d kv %d heads %d hd %d in scratch for q 64 kv 1024: nerr %.2g",
		   isa, a.n_q, a.n_kv, a.n_head, a.hd, e);
		free(o0), free(o1);
		att_free(&a);
	}
	ok(ws_overruns == before, "%s attention stays within kern_attention_wsize()", isa);
}

static void cmp_attention(const char *isa)
{
	/* n_q, n_kv, n_head, n_kv_head, head_dim, stride padding */
	static const int shapes[][6] = {
		{ 1, 1, 1, 1, 8, 0 },    { 1, 37, 4, 2, 8, 0 },   { 2, 50, 9, 3, 64, 0 },
		{ 3, 29, 6, 2, 16, 3 },  { 33, 77, 9, 3, 64, 0 }, { 17, 50, 3, 1, 24, 1 },
		{ 5, 40, 2, 1, 5, 0 },   { 20, 70, 4, 4, 128, 0 }, { 9, 33, 2, 2, 96, 0 },
		{ 6, 45, 2, 1, 80, 0 },  { 4, 30, 2, 1, 300, 2 }, { 64, 200, 9, 3, 64, 0 },
		{ 1, 2048, 9, 3, 64, 0 }, { 40, 100, 4, 2, 8, 0 }, { 2, 0, 4, 2, 16, 0 },
		{ 20, 0, 4, 2, 16, 0 },  { 0, 10, 4, 2, 16, 0 },
	};
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		for (int prefill = 0; prefill < 2; prefill++) {
			const int *sh = shapes[s];
			struct att a;
			att_init(&a, sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], prefill);
			long n = (long)a.n_q * a.q_stride;
			float *o0 = att_out(&a), *o1 = dupv(o0, n);
			kern_attention_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos,
					   a.n_q, a.n_kv, a.n_head, a.n_kv_head, a.hd);
			att_run(&a, o1, a.q);
			double e = tap_nerr(o1, o0, n);
			ok(e < TOL_ATT, "%s attention q %d kv %d heads %d/%d hd %d %s vs ref: nerr %.2g", isa,
			   a.n_q, a.n_kv, a.n_head, a.n_kv_head, a.hd, prefill ? "prefill" : "shuffled", e);
			/* out may be q itself (compare the heads, not the stride padding) */
			float *qq = dupv(a.q, n);
			att_run(&a, qq, qq);
			int same = 1;
			for (int i = 0; i < a.n_q; i++)
				same &= memcmp(qq + (size_t)i * a.q_stride, o1 + (size_t)i * a.q_stride,
					       (size_t)a.n_head * a.hd * sizeof *qq) == 0;
			ok(same, "%s attention q %d kv %d hd %d: out = q", isa, a.n_q, a.n_kv, a.hd);
			free(o0), free(o1), free(qq);
			att_free(&a);
		}
	}
}

/* fp16 rows: the fast path (F16C, where the level has it) equals fp16_to_fp32
 * bit for bit on all 65,536 halves (NaN payloads, subnormals, infinities),
 * from any alignment and for any length; elsewhere it declines, writing nothing. */
static void cmp_f16(const char *isa)
{
	enum { N = 65536 + 37 };
	uint8_t *raw = malloc(2 * N + 8);
	float *got = malloc(N * sizeof *got), *want = malloc(N * sizeof *want);
	ASSERT(raw && got && want);
	bool same = true, declined = true, untouched = true;
	for (int off = 0; off < 3; off++) {
		uint8_t *src = raw + off;
		for (int i = 0; i < N; i++) {
			uint16_t h = (uint16_t)(i * 40503u + off); /* every half, in a scrambled order */
			src[2 * i] = (uint8_t)h, src[2 * i + 1] = (uint8_t)(h >> 8);
			want[i] = fp16_to_fp32(h);
		}
		for (int n = N; n > 0; n = n > 100 ? n / 7 : n - 13) {
			memset(got, 0xA5, (size_t)N * sizeof *got);
			if (!kern_f16_to_f32(got, src, n)) {
				for (int i = 0; i < N; i++) {
					uint32_t u;
					memcpy(&u, got + i, 4);
					untouched &= u == 0xA5A5A5A5u;
				}
				continue;
			}
			declined = false;
			same &= memcmp(got, want, (size_t)n * sizeof *got) == 0;
			if (n < N) { /* nothing past the row written */
				uint32_t guard;
				memcpy(&guard, got + n, 4);
				same &= guard == 0xA5A5A5A5u;
			}
		}
	}
	if (kern_level >= KERN_AVX2)
		ok(!declined && same, "%s f16 rows: F16C equals fp16_to_fp32 on every half, any alignment and length", isa);
	else
		ok(declined && untouched, "%s f16 rows: no fast path at this level, and nothing written", isa);
	free(raw), free(got), free(want);
}

/* Options (kern_attention_ex): a sliding window, soft-capped scores and a scale
 * of one's own, on the split, tile and row paths against the reference; and
 * the reference against what each option means, built from plain attention:
 * a window = keys behind it moved out of sight (INT32_MAX) for a lone query, a
 * huge cap = no cap, a scale = the query scaled. */
static void cmp_attention_ex(const char *isa)
{
	static const int shapes[][6] = { /* n_q, n_kv, n_head, n_kv_head, head_dim, prefill */
		{ 1, 300, 4, 2, 64, 1 }, { 3, 200, 4, 1, 32, 0 }, { 40, 120, 4, 2, 64, 1 },
		{ 33, 90, 8, 2, 16, 0 }, { 5, 60, 2, 1, 300, 1 }, { 64, 64, 2, 1, 256, 1 },
	};
	static const struct kern_att_opts opts[] = {
		{ .window = 1 }, { .window = 7 }, { .window = 40 }, { .softcap = 2.0f },
		{ .scale = 0.4f }, { .scale = 0.3f, .window = 16, .softcap = 3.0f },
	};
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
		for (size_t o = 0; o < sizeof opts / sizeof *opts; o++) {
			const int *sh = shapes[s];
			const struct kern_att_opts *op = &opts[o];
			struct att a;
			att_init(&a, sh[0], sh[1], sh[2], sh[3], sh[4], 0, sh[5]);
			long n = (long)a.n_q * a.q_stride;
			float *o0 = att_out(&a), *o1 = dupv(o0, n);
			void *ws = malloc(kern_attention_wsize(a.n_q, a.n_kv, a.n_head) + 64);
			kern_attention_ex_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, 0,
					      a.n_q, a.n_kv, a.n_head, a.n_kv_head, a.hd, op);
			kern_attention_ex(o1, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, 0, a.n_q,
					  a.n_kv, a.n_head, a.n_kv_head, a.hd, op, ws);
			double e = tap_nerr(o1, o0, n);
			ok(e < TOL_ATT, "%s attention q %d kv %d heads %d/%d hd %d window %d cap %g scale %g vs ref: nerr %.2g",
			   isa, a.n_q, a.n_kv, a.n_head, a.n_kv_head, a.hd, op->window, op->softcap, op->scale, e);
			free(ws), free(o0), free(o1);
			att_free(&a);
		}
	/* what the options mean, on the reference */
	struct att a;
	att_init(&a, 1, 90, 4, 2, 32, 0, 0);
	a.q_pos[0] = 70;
	long n = (long)a.q_stride;
	int32_t *kp = malloc((size_t)a.n_kv * sizeof *kp);
	float *o0 = att_out(&a), *o1 = dupv(o0, n), *qs = dupv(a.q, n);
	ASSERT(kp);
	for (int j = 0; j < a.n_kv; j++)
		kp[j] = a.k_pos[j] <= 70 - 12 ? INT32_MAX : a.k_pos[j];
	kern_attention_ex_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, 0, 1, a.n_kv, a.n_head,
			      a.n_kv_head, a.hd, &(struct kern_att_opts){ .window = 12 });
	kern_attention_ref(o1, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, kp, 1, a.n_kv, a.n_head, a.n_kv_head,
			   a.hd);
	ok(tap_nerr(o0, o1, n) < 1e-12, "%s attention: window 12 = the 12 keys up to the query's position", isa);
	kern_attention_ex_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, 0, 1, a.n_kv, a.n_head,
			      a.n_kv_head, a.hd, &(struct kern_att_opts){ .softcap = 1e9f });
	kern_attention_ref(o1, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, 1, a.n_kv, a.n_head,
			   a.n_kv_head, a.hd);
	ok(tap_nerr(o0, o1, n) < 1e-9, "%s attention: a cap far above every score changes nothing", isa);
	float *plain = dupv(o1, n);
	for (long i = 0; i < n; i++)
		qs[i] *= 0.25f * sqrtf((float)a.hd);
	kern_attention_ex_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, 0, 1, a.n_kv, a.n_head,
			      a.n_kv_head, a.hd, &(struct kern_att_opts){ .scale = 0.25f });
	kern_attention_ref(o1, qs, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, 1, a.n_kv, a.n_head,
			   a.n_kv_head, a.hd);
	ok(tap_nerr(o0, o1, n) < 1e-6, "%s attention: scale 0.25 = queries scaled to it", isa);
	kern_attention_ex_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, 0, 1, a.n_kv, a.n_head,
			      a.n_kv_head, a.hd, &(struct kern_att_opts){ .softcap = 0.5f });
	ok(tap_nerr(o0, plain, n) > 1e-3, "%s attention: a cap below the scores changes the output", isa);
	free(kp), free(o0), free(o1), free(qs), free(plain);
	att_free(&a);
}

/* Positions per kv head (token-evicted caches): each kv head's own shuffled
 * positions, some slots empty (INT32_MAX); the split, tile and row paths
 * against the reference, and the reference against kern_attention run one kv
 * head at a time with that head's positions (what the per-head form means). */
static void cmp_attention_ph(const char *isa)
{
	static const int shapes[][5] = { /* n_q, n_kv, n_head, n_kv_head, head_dim */
		{ 1, 300, 9, 3, 64 }, { 3, 77, 4, 2, 16 }, { 40, 120, 9, 3, 64 }, { 17, 50, 6, 2, 24 },
		{ 1, 2048, 8, 8, 32 },
	};
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		const int *sh = shapes[s];
		struct att a;
		att_init(&a, sh[0], sh[1], sh[2], sh[3], sh[4], 0, 0);
		const int nkv = a.n_kv, nkvh = a.n_kv_head, rep = a.n_head / nkvh;
		int32_t *kp = malloc((size_t)nkvh * nkv * sizeof *kp);
		for (int g = 0; g < nkvh; g++) {
			for (int j = 0; j < nkv; j++)
				kp[g * nkv + j] = randi(5) == 0 ? INT32_MAX : j;
			shuffle(kp + g * nkv, nkv);
		}
		for (int i = 0; i < a.n_q; i++)
			a.q_pos[i] = randi(nkv + 2);
		long n = (long)a.n_q * a.q_stride;
		float *o0 = att_out(&a), *o1 = dupv(o0, n), *o2 = dupv(o0, n);
		kern_attention_ph_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, kp, nkv, a.n_q, nkv, a.n_head,
				      nkvh, a.hd);
		void *ws = malloc(kern_attention_wsize(a.n_q, nkv, a.n_head) + 64);
		kern_attention_ph(o1, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, kp, nkv, a.n_q, nkv, a.n_head, nkvh,
				  a.hd, ws);
		for (int g = 0; g < nkvh; g++) {
			size_t off = (size_t)g * rep * a.hd;
			kern_attention_ref(o2 + off, a.q + off, a.q_stride, a.k + (size_t)g * a.hd, a.v + (size_t)g * a.hd,
					   a.kv_stride, a.q_pos, kp + g * nkv, a.n_q, nkv, rep, 1, a.hd);
		}
		double e = tap_nerr(o1, o0, n), e2 = tap_nerr(o2, o0, n);
		ok(e < TOL_ATT && e2 < 1e-12, "%s attention, positions per kv head, q %d kv %d heads %d/%d hd %d: nerr %.2g "
		   "(per-head reference %.2g)", isa, a.n_q, nkv, a.n_head, nkvh, a.hd, e, e2);
		free(o0), free(o1), free(o2), free(ws), free(kp);
		att_free(&a);
	}
}

/* Keys at later positions than every query may hold anything, NaN included;
 * a key at a later position than query i has no effect on row i (bit for bit);
 * one at an earlier position does (so the checks can fail). */
static void kat_att_future(const char *isa, int n_q, int hd)
{
	struct att a;
	att_init(&a, n_q, 60, 9, 3, hd, 0, 0);
	const long n = (long)n_q * a.q_stride;
	const size_t row = (size_t)a.q_stride * sizeof(float);
	const int i0 = randi(n_q);
	for (int i = 0; i < n_q; i++)
		a.q_pos[i] = randi(41);
	a.q_pos[i0] = 30;
	float *o0 = att_out(&a), *o1 = dupv(o0, n), *o2 = dupv(o0, n);
	att_run(&a, o0, a.q);
	for (int j = 0; j < a.n_kv; j++)
		for (int d = 0; a.k_pos[j] > 40 && d < a.kv_stride; d++)
			a.k[(size_t)j * a.kv_stride + d] = a.v[(size_t)j * a.kv_stride + d] = NAN;
	att_run(&a, o1, a.q);
	ok(memcmp(o0, o1, (size_t)n * sizeof *o0) == 0,
	   "%s attention q %d hd %d: NaN in slots after every query changes nothing", isa, n_q, hd);
	for (int j = 0; j < a.n_kv; j++) {
		for (int d = 0; a.k_pos[j] > a.q_pos[i0] && d < a.kv_stride; d++) {
			a.k[(size_t)j * a.kv_stride + d] = tap_randf(-100, 100);
			a.v[(size_t)j * a.kv_stride + d] = tap_randf(-100, 100);
		}
	}
	att_run(&a, o1, a.q);
	ok(memcmp(o0 + (size_t)i0 * a.q_stride, o1 + (size_t)i0 * a.q_stride, row) == 0,
	   "%s attention q %d hd %d: keys after the query's position change nothing", isa, n_q, hd);
	for (int j = 0; j < a.n_kv; j++)
		if (a.k_pos[j] == 29)
			for (int d = 0; d < a.kv_stride; d++)
				a.v[(size_t)j * a.kv_stride + d] += 1.0f;
	att_run(&a, o2, a.q);
	ok(memcmp(o1 + (size_t)i0 * a.q_stride, o2 + (size_t)i0 * a.q_stride, row) != 0,
	   "%s attention q %d hd %d: a key before the query's position changes its output", isa, n_q, hd);
	free(o0), free(o1), free(o2);
	att_free(&a);
}

/* Slots in any order: permuting K/V rows with their positions gives the same result. */
static void kat_att_order(const char *isa, int n_q, int hd)
{
	struct att a, b;
	att_init(&a, n_q, 90, 9, 3, hd, 0, 1);
	b = a;
	b.k = dupv(a.k, (long)a.n_kv * a.kv_stride);
	b.v = dupv(a.v, (long)a.n_kv * a.kv_stride);
	b.k_pos = malloc((size_t)a.n_kv * sizeof *b.k_pos);
	int32_t *perm = malloc((size_t)a.n_kv * sizeof *perm);
	for (int j = 0; j < a.n_kv; j++)
		perm[j] = j;
	shuffle(perm, a.n_kv);
	for (int j = 0; j < a.n_kv; j++) {
		b.k_pos[j] = a.k_pos[perm[j]];
		memcpy(b.k + (size_t)j * a.kv_stride, a.k + (size_t)perm[j] * a.kv_stride, (size_t)a.kv_stride * 4);
		memcpy(b.v + (size_t)j * a.kv_stride, a.v + (size_t)perm[j] * a.kv_stride, (size_t)a.kv_stride * 4);
	}
	long n = (long)n_q * a.q_stride;
	float *o0 = att_out(&a), *o1 = att_out(&a);
	att_run(&a, o0, a.q);
	att_run(&b, o1, a.q);
	double e = tap_nerr(o1, o0, n);
	/* only the order of float sums changes */
	ok(e < 2e-6, "%s attention q %d hd %d: shuffled slots give the same output, nerr %.2g", isa, n_q, hd, e);
	free(o0), free(o1), free(perm), free(b.k), free(b.v), free(b.k_pos);
	att_free(&a);
}

/* GQA: 4 heads on 2 kv heads equals 4 heads on 4 kv heads holding copies (0,0,1,1). */
static void kat_att_gqa(const char *isa, int n_q, int hd)
{
	struct att a, b;
	att_init(&a, n_q, 50, 4, 2, hd, 0, 1);
	b = a;
	b.n_kv_head = 4;
	b.kv_stride = 4 * hd;
	b.k = malloc((size_t)a.n_kv * b.kv_stride * sizeof *b.k);
	b.v = malloc((size_t)a.n_kv * b.kv_stride * sizeof *b.v);
	for (int j = 0; j < a.n_kv; j++) {
		for (int h = 0; h < 4; h++) {
			size_t to = (size_t)j * b.kv_stride + (size_t)h * hd, from = (size_t)j * a.kv_stride + (size_t)(h / 2) * hd;
			memcpy(b.k + to, a.k + from, (size_t)hd * sizeof *b.k);
			memcpy(b.v + to, a.v + from, (size_t)hd * sizeof *b.v);
		}
	}
	float *o0 = att_out(&a), *o1 = att_out(&a);
	att_run(&a, o0, a.q);
	att_run(&b, o1, a.q);
	double e = tap_nerr(o1, o0, (long)n_q * a.q_stride);
	ok(e < 2e-6, "%s attention q %d hd %d: GQA 4/2 = 4/4 with copied kv heads, nerr %.2g", isa, n_q, hd, e);
	free(o0), free(o1), free(b.k), free(b.v);
	att_free(&a);
}

/* A query that sees no key outputs zeros; one that sees one key outputs its V. */
static void kat_att_edges(const char *isa, int n_q, int hd)
{
	struct att a;
	att_init(&a, n_q, 40, 6, 2, hd, 0, 0);
	for (int j = 0; j < a.n_kv; j++)
		a.k_pos[j] += 10; /* keys at 10..49 */
	int i_none = randi(n_q), i_one = (i_none + 1) % n_q;
	a.q_pos[i_none] = 9;
	a.q_pos[i_one] = 10;
	float *o = att_out(&a);
	att_run(&a, o, a.q);
	int zeros = 1, same = 1, j10 = 0;
	for (int j = 0; j < a.n_kv; j++)
		j10 = a.k_pos[j] == 10 ? j : j10;
	for (int h = 0; h < a.n_head; h++) {
		for (int d = 0; d < hd; d++) {
			zeros &= o[(size_t)i_none * a.q_stride + h * hd + d] == 0.0f;
			float want = a.v[(size_t)j10 * a.kv_stride + (h / 3) * hd + d];
			same &= fabsf(o[(size_t)i_one * a.q_stride + h * hd + d] - want) <= 1e-6f * fabsf(want);
		}
	}
	ok(zeros, "%s attention q %d hd %d: a query that sees no key gets zeros", isa, n_q, hd);
	ok(same, "%s attention q %d hd %d: a query that sees one key gets its V", isa, n_q, hd);
	free(o);
	att_free(&a);
}

static void kat_attention(const char *isa)
{
	kat_att_wsize(isa);
	/* few queries take the split path, many the tile path, head_dim > 256 the row path */
	static const int cases[][2] = { { 1, 8 }, { 2, 64 }, { 12, 8 }, { 24, 64 }, { 11, 20 }, { 6, 272 } };
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		kat_att_future(isa, cases[c][0], cases[c][1]);
		kat_att_order(isa, cases[c][0], cases[c][1]);
		kat_att_gqa(isa, cases[c][0], cases[c][1]);
		kat_att_edges(isa, cases[c][0] + 1, cases[c][1]);
	}
}

/* ================= APE attention ================= */

/* The dispatched APE kernel with scratch for the call and a guard after it. */
static void ape_run(const struct att *a, float *out, const struct kern_ape *ape)
{
	enum { GUARD = 256 };
	size_t ws = kern_attention_wsize(a->n_q, a->n_kv, a->n_head);
	unsigned char *buf = malloc(ws + 3 + GUARD);
	ASSERT(buf);
	memset(buf + 3 + ws, 0xA5, GUARD);
	kern_attention_ape(out, a->q, a->q_stride, a->k, a->v, a->kv_stride, a->q_pos, a->k_pos, a->n_q, a->n_kv,
			   a->n_head, a->n_kv_head, a->hd, ape, buf + 3);
	for (int i = 0; i < GUARD; i++)
		ws_overruns += buf[3 + ws + i] != 0xA5;
	free(buf);
}

/* Known answers for every variant: one head, head_dim 1, q = 1, every key 0
 * (every logit 0): an ordinary key of value 1 and n context keys of value 0
 * give 1 / (1 + n^(S T)); T = S = 1, and an empty context, give exactly the
 * ordinary attention on random data; context keys at later positions than a
 * query are masked as ever. */
static void kat_attention_ape(const char *isa)
{
	static const float ts[][2] = { { 0.9f, 0.9f }, { 1, 1 }, { 0.5f, 2 }, { 1.5f, 0.7f } };
	for (size_t c = 0; c < sizeof ts / sizeof *ts; c++) {
		for (int n = 1; n <= 600; n += 299) {
			struct att a;
			att_init(&a, 1, n + 1, 1, 1, 1, 0, 1);
			a.q[0] = 1;
			for (int j = 0; j <= n; j++)
				a.k[j] = 0, a.v[j] = j == 0 ? 1.0f : 0.0f, a.k_pos[j] = j == 0 ? 0 : 1;
			a.q_pos[0] = 2;
			struct kern_ape ape = { 1, n + 1, ts[c][0], ts[c][1] };
			float out;
			ape_run(&a, &out, &ape);
			double want = 1 / (1 + pow(n, (double)ts[c][0] * ts[c][1]));
			ok(fabs(out - want) < 1e-5 * (1 + want), "%s ape T %.2g S %.2g, %d context keys: %.7g (want %.7g)",
			   isa, ts[c][0], ts[c][1], n, out, want);
			att_free(&a);
		}
	}
	/* T = S = 1, or no context: ordinary attention */
	static const int shapes[][5] = { /* n_q, n_kv, n_head, n_kv_head, head_dim */
		{ 1, 37, 4, 2, 8 }, { 3, 200, 9, 3, 64 }, { 40, 120, 6, 2, 32 }, { 5, 900, 4, 4, 272 },
	};
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		const int *sh = shapes[s];
		struct att a;
		att_init(&a, sh[0], sh[1], sh[2], sh[3], sh[4], 1, 1);
		const long n = (long)a.n_q * a.q_stride;
		float *o0 = att_out(&a), *o1 = dupv(o0, n), *o2 = dupv(o0, n);
		kern_attention_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, a.n_q, a.n_kv, a.n_head,
				   a.n_kv_head, a.hd);
		struct kern_ape one = { a.n_kv / 5, a.n_kv - a.n_q, 1, 1 }, none = { 3, 3, 0.9f, 0.9f };
		ape_run(&a, o1, &one);
		ape_run(&a, o2, &none);
		double e1 = tap_nerr(o1, o0, n), e2 = tap_nerr(o2, o0, n);
		ok(e1 < TOL_ATT && e2 < TOL_ATT, "%s ape q %d kv %d hd %d: T = S = 1 is attention (nerr %.2g), "
		   "so is an empty context (%.2g)", isa, a.n_q, a.n_kv, a.hd, e1, e2);
		free(o0), free(o1), free(o2);
		att_free(&a);
	}
}

/* The fast variant against the reference on random data: random context
 * ranges, temperatures and scales, shuffled positions (some queries see
 * nothing, some context keys are in a query's future). */
static void cmp_attention_ape(const char *isa)
{
	static const int shapes[][5] = { /* n_q, n_kv, n_head, n_kv_head, head_dim */
		{ 1, 1, 1, 1, 8 }, { 1, 37, 4, 2, 8 }, { 2, 50, 9, 3, 64 }, { 3, 29, 6, 2, 16 }, { 33, 77, 9, 3, 64 },
		{ 17, 50, 3, 1, 24 }, { 5, 40, 2, 1, 5 }, { 20, 700, 4, 4, 128 }, { 1, 2048, 9, 3, 64 }, { 2, 0, 4, 2, 16 },
	};
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		for (int prefill = 0; prefill < 2; prefill++) {
			const int *sh = shapes[s];
			struct att a;
			att_init(&a, sh[0], sh[1], sh[2], sh[3], sh[4], 2, prefill);
			const long n = (long)a.n_q * a.q_stride;
			int c0 = randi(a.n_kv + 1), c1 = c0 + randi(a.n_kv - c0 + 1);
			struct kern_ape ape = { c0, c1, tap_randf(0.3f, 2.0f), tap_randf(0.3f, 2.0f) };
			float *o0 = att_out(&a), *o1 = dupv(o0, n);
			kern_attention_ape_ref(o0, a.q, a.q_stride, a.k, a.v, a.kv_stride, a.q_pos, a.k_pos, a.n_q, a.n_kv,
					       a.n_head, a.n_kv_head, a.hd, &ape);
			ape_run(&a, o1, &ape);
			double e = tap_nerr(o1, o0, n);
			ok(e < TOL_ATT, "%s ape q %d kv %d heads %d/%d hd %d context [%d, %d) T %.2f S %.2f %s vs ref: "
			   "nerr %.2g", isa, a.n_q, a.n_kv, a.n_head, a.n_kv_head, a.hd, c0, c1, ape.temp, ape.scale,
			   prefill ? "prefill" : "shuffled", e);
			free(o0), free(o1);
			att_free(&a);
		}
	}
}

/* ================= timing ================= */

static double time_att(const struct att *a, float *out, int ref, int reps)
{
	size_t wsz = kern_attention_wsize(a->n_q, a->n_kv, a->n_head);
	void *ws = malloc(wsz);
	double best = 1e30;
	for (int r = 0; r < reps; r++) {
		double t0 = kb_now();
		if (ref)
			kern_attention_ref(out, a->q, a->q_stride, a->k, a->v, a->kv_stride, a->q_pos, a->k_pos,
					   a->n_q, a->n_kv, a->n_head, a->n_kv_head, a->hd);
		else
			kern_attention(out, a->q, a->q_stride, a->k, a->v, a->kv_stride, a->q_pos, a->k_pos,
				       a->n_q, a->n_kv, a->n_head, a->n_kv_head, a->hd, ws);
		double t = kb_now() - t0;
		best = t < best ? t : best;
	}
	free(ws);
	return best;
}

/* Best-of wall times: the reference (one thread), then each variant on one
 * thread and on all of them. The machine may be shared: compare within a run. */
static int bench(void)
{
	static const int shapes[][2] = { { 512, 512 }, { 1, 2048 }, { 2048, 8192 } };
	const int all = kern_threads();
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		struct att a;
		att_init(&a, shapes[s][0], shapes[s][1], 9, 3, 64, 0, 1);
		float *out = att_out(&a);
		int big = a.n_q * (long)a.n_kv > 4000000, reps = big ? 2 : a.n_q > 1 ? 10 : 100;
		printf("attention q %d kv %d heads 9/3 hd 64 (best of %d)\n", a.n_q, a.n_kv, reps);
		if (!big)
			printf("  %-8s 1 thread  %9.3f ms\n", "ref", 1e3 * time_att(&a, out, 1, big ? 1 : 3));
		for (int l = KERN_GENERIC; l <= (int)kern_cpu_level(); l++) {
			kern_set_isa(levels[l]);
			for (int nt = 1; nt <= all; nt = nt < all ? all : all + 1) {
				kern_set_threads(nt);
				printf("  %-8s %d thread%s %9.3f ms\n", levels[l], nt, nt > 1 ? "s" : " ",
				       1e3 * time_att(&a, out, 0, l == KERN_GENERIC && big ? 1 : reps));
			}
		}
		kern_set_threads(all);
		free(out);
		att_free(&a);
	}
	return 0;
}

int main(int argc, char **argv)
{
	tap_seed();
	kern_init();
	if (argc > 1 && strcmp(argv[1], "--bench") == 0)
		return bench();
	diag("cpu level %s", levels[kern_cpu_level()]);
	for (int l = KERN_REF; l <= (int)kern_cpu_level(); l++) {
		const char *isa = levels[l];
		ok(kern_set_isa(isa) == 0 && strcmp(kern_isa(), isa) == 0, "kern_set_isa(%s)", isa);
		kat_rmsnorm(isa);
		kat_rope_pairs(isa);
		kat_rope_group(isa);
		kat_softmax(isa);
		kat_swiglu(isa);
		kat_layernorm(isa);
		kat_gelu(isa);
		kat_attention(isa);
		kat_attention_ape(isa);
		if (l == KERN_REF)
			continue;
		cmp_rmsnorm(isa);
		cmp_rope(isa);
		cmp_softmax(isa);
		cmp_swiglu(isa);
		cmp_layernorm(isa);
		cmp_gelu(isa);
		cmp_attention(isa);
		cmp_attention_ph(isa);
		cmp_attention_ex(isa);
		cmp_f16(isa);
		cmp_attention_ape(isa);
	}
	ok(ws_overruns == 0, "no attention call wrote past its scratch (%d bytes)", ws_overruns);
	return done_testing();
}
