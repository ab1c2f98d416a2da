/* test_matmul.c — kern_matmul at every level this CPU runs against
 * kern_matmul_ref, for every supported weight type, on decode (n_tok = 1) and
 * prefill shapes, odd row counts, float tails and the K-chunked path; the
 * K-quants (Q4_K, Q5_K, Q6_K) on rows of whole super-blocks of 256. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "tap.h"
#include "util.h"

/* Allowed normalized error against the reference, per weight type.
 * Float weights: both sides use the same weight values; only the f32
 * summation order differs from the double reference (~1e-7 * sqrt(n_in)).
 * Q8_0 / Q4_0: the fast paths quantize the activations to int8 blocks of 32:
 * rms error 1/254 of a block's max for uniform data, 3.7e-3 of the output
 * measured over many outputs. The per-shape error of a few outputs is a ratio
 * of two small chi-square sums and has a long tail, so the 1e-2 bound is for
 * all shapes of a type together; each shape alone must stay under 0.1 (a
 * wrong block among 18 gives ~0.25). Activations that int8 blocks hold
 * exactly (integers times a power of two) leave only float rounding: 1e-5. */
#define TOL_FLOAT 1e-5
#define TOL_Q_ALL 1e-2
#define TOL_Q_ONE 0.1
#define TOL_EXACT 1e-5
/* K-quants: activations in int8 super-blocks of 256 (one scale per 256, not
 * per 32): the same 1/254 of the max for uniform data (3.7e-3), but token 2
 * below puts 32 values 64x the rest into one super-block, whose other 224
 * values then get a step of ~1 for values ~1: 0.29 rms each, against the 32
 * large ones: sqrt(224) * 0.29 / (sqrt(32) * 64 * 1.15) = 0.0104 relative,
 * and token 2's outputs, 64x the others, dominate the sums over all shapes:
 * ~0.0102 measured, so 2e-2. Exact activations (integers times a power of
 * two per super-block) leave float rounding only. */
#define TOL_K_ALL 2e-2
#define TOL_K_ONE 0.1

static int is_q(int wtype)
{
	return wtype == QTYPE_Q8_0 || wtype == QTYPE_Q4_0;
}

static int is_k(int wtype)
{
	return wtype == QTYPE_Q4_K || wtype == QTYPE_Q5_K || wtype == QTYPE_Q6_K;
}

static const char *const levels[] = { "ref", "generic", "avx2", "avx512" };

struct err {
	double num, den; /* sum of squared differences, of squared reference values */
};

static double nerr_of(struct err e)
{
	return sqrt(e.num) / (e.den > 1e-30 ? sqrt(e.den) : 1e-15);
}

/* Random activations; exact: each block of eb (the kernels' activation block:
 * 32, or 256 for K-quants) is integers in [-127, 127] (one of them +-127)
 * times a power of two, which int8 blocks represent exactly. */
static void fill_x(float *x, int n_tok, int n_in, int exact, int eb)
{
	for (int t = 0; t < n_tok; t++) {
		float *xt = x + (size_t)t * n_in;
		for (int i = 0; i < n_in; i++)
			xt[i] = tap_randf(-2, 2);
		if (exact) {
			for (int b = 0; b < n_in / eb; b++) {
				float c = ldexpf(1, (int)tap_randf(-8, 4));
				for (int j = 0; j < eb; j++)
					xt[b * eb + j] = c * (float)(int)tap_randf(-127, 128);
				/* in the upper half: token 2 below zeroes the first 32 elements */
				xt[b * eb + eb / 2 + (int)tap_randf(0, (float)eb / 2)] = c * (b & 1 ? 127 : -127);
			}
		}
		if (t == 2) { /* a token with an all-zero block and 32 large values (exact: a block of eb) */
			for (int i = 0; i < 32 && i < n_in; i++)
				xt[i] = 0;
			for (int i = 0; i < (exact ? eb : 32) && i < n_in; i++)
				xt[n_in - 1 - i] *= 64;
		}
	}
}

/* One comparison of kern_matmul with kern_matmul_ref; a dead canary after y
 * or a NaN counts as a huge error. */
static struct err run_case(int wtype, int n_tok, int n_in, int n_out, int exact)
{
	const struct qtype_traits *tr = qtype_traits(wtype);
	size_t row = qtype_row_size(wtype, n_in), ws_size = kern_matmul_wsize(wtype, n_tok, n_in);
	size_t ny = (size_t)n_tok * n_out;
	float *wf = malloc((size_t)n_in * sizeof *wf), *x = malloc((size_t)n_tok * n_in * sizeof *x);
	float *y = malloc((ny + 16) * sizeof *y), *ref = malloc(ny * sizeof *ref);
	uint8_t *w = kb_aligned_alloc(64, (size_t)n_out * row + 64);
	void *ws = ws_size ? kb_aligned_alloc(64, ws_size) : NULL;
	ASSERT(wf && x && y && ref && w && (ws || !ws_size));

	for (int o = 0; o < n_out; o++) {
		float s = exp2f(tap_randf(-1, 1)); /* rows of different magnitude */
		for (int i = 0; i < n_in; i++)
			wf[i] = s * tap_randf(-1, 1);
		tr->from_float(wf, w + (size_t)o * row, n_in);
	}
	fill_x(x, n_tok, n_in, exact, is_k(wtype) ? 256 : 32);
	if (ws)
		memset(ws, 0xff, ws_size); /* garbage (NaN bytes): kernels must not read unwritten scratch */
	for (size_t i = 0; i < ny + 16; i++)
		y[i] = NAN;

	kern_matmul_ref(ref, x, w, wtype, n_tok, n_in, n_out);
	kern_matmul(y, x, w, wtype, n_tok, n_in, n_out, ws);
	struct err e = { 0, 0 };
	for (size_t i = 0; i < ny; i++) {
		double d = (double)y[i] - ref[i];
		e.num += d * d;
		e.den += (double)ref[i] * ref[i];
	}
	for (size_t i = ny; i < ny + 16; i++)
		if (!isnan(y[i]))
			e.num = 1e30;
	if (isnan(e.num))
		e.num = 1e30;
	free(wf), free(x), free(y), free(ref), free(w), free(ws);
	return e;
}

/* Tokens 1 and 3 of n_tok hold a NaN and an infinity: none of their outputs is
 * finite, as in f32 (NaN, or +-inf for the infinity; the int8 paths quantize
 * such a block as zeros with a NaN scale, never converting a NaN to an
 * integer), and every other output is finite and near the reference's (the
 * precision is checked above; 1e-2 here). Returns whether that held. */
static int nonfinite_case(int wtype, int n_tok, int n_in, int n_out)
{
	const struct qtype_traits *tr = qtype_traits(wtype);
	size_t row = qtype_row_size(wtype, n_in), ws_size = kern_matmul_wsize(wtype, n_tok, n_in);
	size_t ny = (size_t)n_tok * n_out;
	float *wf = malloc((size_t)n_in * sizeof *wf), *x = malloc((size_t)n_tok * n_in * sizeof *x);
	float *y = malloc(ny * sizeof *y), *ref = malloc(ny * sizeof *ref);
	uint8_t *w = kb_aligned_alloc(64, (size_t)n_out * row + 64);
	void *ws = ws_size ? kb_aligned_alloc(64, ws_size) : NULL;
	ASSERT(wf && x && y && ref && w && (ws || !ws_size));
	for (int o = 0; o < n_out; o++) {
		for (int i = 0; i < n_in; i++)
			wf[i] = tap_randf(-1, 1);
		tr->from_float(wf, w + (size_t)o * row, n_in);
	}
	fill_x(x, n_tok, n_in, 1, is_k(wtype) ? 256 : 32);
	x[(size_t)1 * n_in + n_in / 2] = NAN;
	x[(size_t)3 * n_in + 5] = INFINITY;
	kern_matmul_ref(ref, x, w, wtype, n_tok, n_in, n_out);
	kern_matmul(y, x, w, wtype, n_tok, n_in, n_out, ws);
	int good = 1;
	for (int t = 0; t < n_tok; t++)
		for (int o = 0; o < n_out; o++) {
			float v = y[(size_t)t * n_out + o], r = ref[(size_t)t * n_out + o];
			int g = t == 1 || t == 3 ? !isfinite(v) && !isfinite(r)
						 : isfinite(v) && fabsf(v - r) <= 1e-2f * (1 + fabsf(r));
			if (!g && good)
				diag("%s n_tok %d: token %d output %d is %g, the reference %g", qtype_name(wtype), n_tok, t, o,
				     v, r);
			good &= g;
		}
	free(wf), free(x), free(y), free(ref), free(w), free(ws);
	return good;
}

/* Every shape of one type at the current level: per-shape bound tol_one, all
 * shapes together tol_all. */
static void check_shapes(const char *lv, int wt, int exact, double tol_one, double tol_all)
{
	static const int toks[] = { 1, 3, 7, 12, 64 };
	static const int ins_32[] = { 64, 288, 576 }, ins_k[] = { 256, 512, 1536 };
	static const int outs[] = { 5, 37, 97 };
	const int *ins = is_k(wt) ? ins_k : ins_32;
	struct err all = { 0, 0 };
	double worst = 0;
	int n = 0, bad = 0;

	for (size_t a = 0; a < sizeof toks / sizeof *toks; a++)
		for (size_t b = 0; b < 3; b++)
			for (size_t c = 0; c < sizeof outs / sizeof *outs; c++) {
				struct err e = run_case(wt, toks[a], ins[b], outs[c], exact);
				double ne = nerr_of(e);
				all.num += e.num, all.den += e.den, n++;
				worst = ne > worst ? ne : worst;
				if (!(ne <= tol_one) && bad++ < 3)
					diag("%s %s%s n_tok %d n_in %d n_out %d: nerr %.3g", lv, qtype_name(wt),
					     exact ? " exact x" : "", toks[a], ins[b], outs[c], ne);
			}
	ok(bad == 0 && nerr_of(all) <= tol_all, "%s %s%s: %d shapes, nerr %.3g <= %.0e, worst %.3g <= %.0e", lv,
	   qtype_name(wt), exact ? " exact x" : "", n, nerr_of(all), tol_all, worst, tol_one);
}

static void test_level(int level)
{
	static const int types[] = { QTYPE_F32, QTYPE_F16, QTYPE_BF16, QTYPE_Q8_0, QTYPE_Q4_0,
				     QTYPE_Q4_K, QTYPE_Q5_K, QTYPE_Q6_K };
	const char *lv = levels[level];
	int r = level == KERN_REF; /* the reference level must be the reference, bit for bit */

	ok(kern_set_isa(lv) == 0 && strcmp(kern_isa(), lv) == 0, "select %s", lv);
	for (size_t ty = 0; ty < sizeof types / sizeof *types; ty++) {
		int wt = types[ty];
		if (is_q(wt)) {
			check_shapes(lv, wt, 0, r ? 0 : TOL_Q_ONE, r ? 0 : TOL_Q_ALL);
			check_shapes(lv, wt, 1, r ? 0 : TOL_EXACT, r ? 0 : TOL_EXACT);
		} else if (is_k(wt)) {
			check_shapes(lv, wt, 0, r ? 0 : TOL_K_ONE, r ? 0 : TOL_K_ALL);
			check_shapes(lv, wt, 1, r ? 0 : TOL_EXACT, r ? 0 : TOL_EXACT);
		} else {
			check_shapes(lv, wt, 0, r ? 0 : TOL_FLOAT, r ? 0 : TOL_FLOAT);
		}
	}

	/* float types with n_in not a multiple of the vector width (tails) */
	static const int ftypes[] = { QTYPE_F32, QTYPE_F16, QTYPE_BF16 };
	for (size_t ty = 0; ty < sizeof ftypes / sizeof *ftypes; ty++) {
		double e1 = nerr_of(run_case(ftypes[ty], 1, 37, 9, 0));
		double e2 = nerr_of(run_case(ftypes[ty], 5, 100, 13, 0));
		double tol = r ? 0 : TOL_FLOAT;
		ok(e1 <= tol && e2 <= tol, "%s %s n_in 37 / 100 tails: nerr %.3g %.3g", lv, qtype_name(ftypes[ty]),
		   e1, e2);
	}
	/* long rows, split into K chunks by the kernels (odd block counts): few
	 * tokens, one token, many tokens */
	for (int q = 0; q < 2; q++) {
		int wt = q ? QTYPE_Q4_0 : QTYPE_Q8_0;
		double e1 = nerr_of(run_case(wt, 3, 32 * 259, 19, 1));
		double e2 = nerr_of(run_case(wt, 1, 32 * 601, 45, 1));
		double e3 = nerr_of(run_case(wt, 21, 32 * 131, 35, 1));
		double tol = r ? 0 : TOL_EXACT;
		ok(e1 <= tol && e2 <= tol && e3 <= tol,
		   "%s %s exact x n_in 8288 / 19232 / 4192 (K chunks): nerr %.3g %.3g %.3g", lv, qtype_name(wt),
		   e1, e2, e3);
	}
	/* K-quants: long rows (odd super-block counts, over the kernels' K chunks),
	 * one token, few, many; n_tok not a multiple of any tile, many row blocks */
	static const int ktypes[] = { QTYPE_Q4_K, QTYPE_Q5_K, QTYPE_Q6_K };
	for (size_t ty = 0; ty < sizeof ktypes / sizeof *ktypes; ty++) {
		int wt = ktypes[ty];
		double e1 = nerr_of(run_case(wt, 1, 256 * 37, 21, 1));
		double e2 = nerr_of(run_case(wt, 5, 256 * 19, 19, 1));
		double e3 = nerr_of(run_case(wt, 29, 256 * 13, 35, 1));
		double e4 = nerr_of(run_case(wt, 13, 768, 203, 1));
		double tol = r ? 0 : TOL_EXACT;
		ok(e1 <= tol && e2 <= tol && e3 <= tol && e4 <= tol,
		   "%s %s exact x n_in 9472 / 4864 / 3328, 13 x 768 -> 203: nerr %.3g %.3g %.3g %.3g", lv,
		   qtype_name(wt), e1, e2, e3, e4);
	}
	/* NaN and infinity in the activations, decode-sized and tiled batches */
	for (size_t ty = 0; ty < sizeof types / sizeof *types; ty++) {
		int wt = types[ty], n_in = is_k(wt) ? 512 : 96;
		ok(nonfinite_case(wt, 5, n_in, 7) && nonfinite_case(wt, 19, n_in, 37),
		   "%s %s: a token holding NaN or infinity gives no finite output, the others are untouched", lv,
		   qtype_name(wt));
	}
	/* n_tok not a multiple of any tile, n_out over many row blocks */
	double e = nerr_of(run_case(QTYPE_Q8_0, 13, 96, 203, 1)), f = nerr_of(run_case(QTYPE_F16, 13, 96, 203, 0));
	ok(e <= (r ? 0 : TOL_EXACT) && f <= (r ? 0 : TOL_FLOAT), "%s q8_0 / f16 13 x 96 -> 203: nerr %.3g %.3g",
	   lv, e, f);
}

/* The matrix-vector plan: a planned variant is what one-token products run
 * (bit for bit that variant's result), prefill is untouched, KVBLEND_MATVEC
 * forces one, and kern_set_isa clears the plan. */
static void test_plan(int top)
{
	static const int types[] = { QTYPE_Q8_0, QTYPE_Q4_0, QTYPE_Q4_K, QTYPE_Q6_K, QTYPE_F16 };
	const int n_in = 512, n_out = 64, n_tok = 8;
	for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
		const int wt = types[k];
		const struct qtype_traits *tr = qtype_traits(wt);
		size_t row = qtype_row_size(wt, n_in), wsz = kern_matmul_wsize(wt, n_tok, n_in);
		uint8_t *w = kb_aligned_alloc(64, (size_t)n_out * row);
		float *wf = malloc((size_t)n_in * sizeof *wf), *x = malloc((size_t)n_tok * n_in * sizeof *x);
		float *y1 = malloc((size_t)n_tok * n_out * sizeof *y1), *y2 = malloc((size_t)n_tok * n_out * sizeof *y2);
		void *ws = wsz ? kb_aligned_alloc(64, wsz) : NULL;
		ASSERT(w && wf && x && y1 && y2 && (ws || !wsz));
		for (int o = 0; o < n_out; o++) {
			for (int i = 0; i < n_in; i++)
				wf[i] = tap_randf(-1, 1);
			tr->from_float(wf, w + (size_t)o * row, n_in);
		}
		fill_x(x, n_tok, n_in, 0, 32);

		struct kern_plan p;
		kern_set_isa(levels[top]);
		int rc = kern_plan_matvec(w, wt, n_in, n_out, &p);
		int known = 0;
		for (int l = KERN_GENERIC; l <= top; l++)
			known |= !strcmp(p.isa, levels[l]);
		ok(rc == 0 && known && !strcmp(kern_matvec_isa(wt), p.isa) && !p.forced,
		   "%s: plan picks %s of %d candidates", tr->name, p.isa, p.n_cand);
		kern_matmul(y1, x, w, wt, 1, n_in, n_out, ws);
		char name[16];
		snprintf(name, sizeof name, "%s", p.isa);
		setenv("KVBLEND_MATVEC", name, 1);
		struct kern_plan pf;
		rc = kern_plan_matvec(w, wt, n_in, n_out, &pf);
		kern_matmul(y2, x, w, wt, 1, n_in, n_out, ws);
		unsetenv("KVBLEND_MATVEC");
		ok(rc == 0 && pf.forced && !memcmp(y1, y2, (size_t)n_out * sizeof *y1),
		   "%s: one token under the plan is %s's result", tr->name, name);
		kern_set_isa(levels[top]);
		ok(!strcmp(kern_matvec_isa(wt), levels[top]), "%s: kern_set_isa clears the plan", tr->name);

		if (top == KERN_AVX512) {
			setenv("KVBLEND_MATVEC", "avx2", 1);
			rc = kern_plan_matvec(w, wt, n_in, n_out, &p);
			kern_matmul(y1, x, w, wt, 1, n_in, n_out, ws);
			ok(rc == 0 && p.forced && !strcmp(p.isa, "avx2") && !strcmp(kern_matvec_isa(wt), "avx2"),
			   "%s: KVBLEND_MATVEC=avx2 forces it", tr->name);
			kern_matmul(y2, x, w, wt, n_tok, n_in, n_out, ws); /* prefill: still avx512 */
			kern_set_isa("avx2");
			float *y3 = malloc((size_t)n_tok * n_out * sizeof *y3);
			ASSERT(y3);
			kern_matmul(y3, x, w, wt, 1, n_in, n_out, ws);
			ok(!memcmp(y1, y3, (size_t)n_out * sizeof *y1), "%s: forced, one token is avx2's result", tr->name);
			kern_set_isa("avx512");
			kern_matmul(y3, x, w, wt, n_tok, n_in, n_out, ws);
			ok(!memcmp(y2, y3, (size_t)n_tok * n_out * sizeof *y2), "%s: prefill keeps avx512's variant",
			   tr->name);
			free(y3);
		}
		/* each variant the plan can pick, against the reference: one token,
		 * odd block counts, rows not a multiple of any tile */
		static const char *const variants[] = { "generic", "avx2", "vnni256", "avx512" };
		for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
			setenv("KVBLEND_MATVEC", variants[v], 1);
			if (kern_plan_matvec(w, wt, n_in, n_out, &p)) {
				ok(strcmp(variants[v], "generic") != 0, "%s: only variants this CPU lacks are refused (%s)",
				   tr->name, variants[v]);
				continue;
			}
			static const int ins_32[] = { 32, 96, 576, 1568 }, ins_k[] = { 256, 768, 1536 };
			static const int outs[] = { 7, 37, 97 };
			const int *ins = is_k(wt) ? ins_k : ins_32, n_ins = is_k(wt) ? 3 : 4;
			double worst = 0, worst_x = 0;
			for (int i = 0; i < n_ins; i++)
				for (size_t o = 0; o < sizeof outs / sizeof *outs; o++) {
					double ne = nerr_of(run_case(wt, 1, ins[i], outs[o], 0));
					double nx = nerr_of(run_case(wt, 1, ins[i], outs[o], 1));
					worst = ne > worst ? ne : worst;
					worst_x = nx > worst_x ? nx : worst_x;
				}
			double tol = wt == QTYPE_F16 ? TOL_FLOAT : is_k(wt) ? TOL_K_ONE : TOL_Q_ONE;
			double tol_x = wt == QTYPE_F16 ? TOL_FLOAT : TOL_EXACT;
			ok(worst <= tol && worst_x <= tol_x,
			   "%s: variant %s, one token: worst nerr %.3g <= %.0e, exact x %.3g <= %.0e", tr->name,
			   variants[v], worst, tol, worst_x, tol_x);
		}
		setenv("KVBLEND_MATVEC", "bogus", 1);
		ok(kern_plan_matvec(w, wt, n_in, n_out, &p) == -1, "%s: KVBLEND_MATVEC=bogus refused", tr->name);
		unsetenv("KVBLEND_MATVEC");
		kern_plan_clear();
		free(w), free(wf), free(x), free(y1), free(y2), free(ws);
	}
}

int main(void)
{
	tap_seed();
	kern_init();
	int top = kern_cpu_level();
	diag("cpu level %s", levels[top]);
	ok(kern_matmul_wsize(QTYPE_F16, 64, 576) == 0 && kern_matmul_wsize(QTYPE_Q8_0, 64, 576) >= 64 * 576 &&
	   kern_matmul_wsize(QTYPE_Q4_K, 3, 512) >= 3 * 512 && kern_matmul_wsize(QTYPE_Q6_K, 64, 1536) >= 64 * 1536,
	   "wsize: none for float weights, room for int8 activations for quantized ones");
	for (int l = 0; l <= top; l++)
		test_level(l);
	test_plan(top);
	for (int l = top + 1; l <= KERN_AVX512; l++)
		ok(kern_set_isa(levels[l]) == -1, "%s refused on this CPU", levels[l]);
	return done_testing();
}
