/* test_tokevict.c — token-level KV eviction (common/tokevict.h) against direct
 * computations on small random data:
 *
 *   - attention statistics (softmax weights summed per query head, masked by
 *     position) against a double-precision loop;
 *   - every policy's selection against a plain re-derivation: scores from the
 *     statistics, max-pooling, then the best tokens picked one at a time by
 *     argmax (the code sorts); the window and the sinks;
 *   - layer budgets: uniform, pyramid (decreasing, PyramidKV's arithmetic
 *     sequence), cake (in proportion to the preferences, capped, the excess
 *     shared); every sum as asked;
 *   - on a tiny synthetic model: a selection run end to end, K/V untouched by
 *     the query recomputation, the evicted cache written and read back (dense
 *     when every head keeps the same tokens, sparse otherwise), every kept row
 *     equal to the original token's row, per-head positions right; the next
 *     token's logits from it equal to those of the whole cache with each
 *     head's dropped tokens masked out of that head; a sparse cache with a
 *     short layer against a dense one masked alike; a budget of every token is
 *     the identity.
 */
#include <math.h>

#include "kvfile.h"
#include "synth.h"
#include "tap.h"
#include "tokevict.h"

/* ---- attention statistics ---- */

static void test_accumulate(void)
{
	enum { NQ = 5, NKV = 13, NH = 4, NKVH = 2, HD = 8 };
	float q[NQ][NH * HD], k[NKV][NKVH * HD];
	int32_t qpos[NQ] = { 3, 12, 0, 7, -1 }, kpos[NKV];
	for (int j = 0; j < NKV; j++)
		kpos[j] = (j * 5) % NKV; /* a permutation of 0..12 */
	for (int i = 0; i < NQ; i++)
		for (int c = 0; c < NH * HD; c++)
			q[i][c] = tap_randf(-2, 2);
	for (int j = 0; j < NKV; j++)
		for (int c = 0; c < NKVH * HD; c++)
			k[j][c] = tap_randf(-2, 2);
	float sum[NH * NKV] = { 0 }, sq[NH * NKV] = { 0 };
	tokevict_accumulate(&q[0][0], NH * HD, qpos, NQ, &k[0][0], NKVH * HD, kpos, NKV, NH, NKVH, HD, sum, sq);
	double want[NH][NKV] = { { 0 } }, want2[NH][NKV] = { { 0 } };
	for (int h = 0; h < NH; h++)
		for (int i = 0; i < NQ; i++) {
			double s[NKV], z = 0, mx = -1e300;
			int seen = 0;
			for (int j = 0; j < NKV; j++) {
				if (kpos[j] > qpos[i])
					continue;
				s[j] = 0;
				for (int c = 0; c < HD; c++)
					s[j] += (double)q[i][h * HD + c] * k[j][(h / 2) * HD + c];
				s[j] /= sqrt(HD);
				mx = s[j] > mx ? s[j] : mx;
				seen++;
			}
			for (int j = 0; j < NKV && seen; j++)
				if (kpos[j] <= qpos[i])
					z += exp(s[j] - mx);
			for (int j = 0; j < NKV && seen; j++)
				if (kpos[j] <= qpos[i]) {
					double p = exp(s[j] - mx) / z;
					want[h][j] += p;
					want2[h][j] += p * p;
				}
		}
	double err = 0, total = 0;
	for (int h = 0; h < NH; h++)
		for (int j = 0; j < NKV; j++) {
			err = fmax(err, fabs(sum[h * NKV + j] - want[h][j]));
			err = fmax(err, fabs(sq[h * NKV + j] - want2[h][j]));
			total += sum[h * NKV + j];
		}
	ok(err < 1e-5, "accumulate: softmax weights and their squares as computed directly (err %.2g)", err);
	/* queries 0..3 see keys; query 4 (position -1) sees none and adds nothing */
	ok(fabs(total - NH * 4) < 1e-4, "accumulate: each query that sees a key adds 1 per head, one that sees none 0 (%.6f)",
	   total);
}

/* ---- one layer's selection ---- */

enum { N = 40, NH = 4, NKVH = 2, NOBS = 6 };

struct stats {
	float sum[NH * N], sq[NH * N], last[NH * N];
};

static void stats_random(struct stats *s)
{
	for (int i = 0; i < NH * N; i++) {
		s->sum[i] = tap_randf(0, NOBS * 0.2f);
		s->sq[i] = s->sum[i] * s->sum[i] / NOBS * tap_randf(1, 2); /* >= mean^2 * n_obs */
		s->last[i] = tap_randf(0, 0.2f);
	}
}

/* The plain re-derivation: score[] over candidates [0, m) for kv head g. */
static void ref_scores(const struct tokevict_opts *o, const struct stats *s, int g, int m, float *score)
{
	for (int j = 0; j < m; j++) {
		if (o->policy == TOKEVICT_CAKE) {
			double mean = 0, var = 0;
			for (int h = 2 * g; h < 2 * g + 2; h++) {
				double mu = s->sum[h * N + j] / NOBS;
				double v = s->sq[h * N + j] / NOBS - mu * mu;
				mean += mu;
				var += v > 0 ? v : 0;
			}
			score[j] = (float)(mean / 2 + o->cake_gamma * (var / 2));
		} else {
			score[j] = (float)((double)s->sum[(2 * g) * N + j] + s->sum[(2 * g + 1) * N + j]);
		}
	}
	if (o->policy != TOKEVICT_H2O && o->pool > 1) {
		float tmp[N];
		for (int j = 0; j < m; j++) {
			tmp[j] = score[j];
			for (int t = j - o->pool / 2; t <= j + o->pool / 2; t++)
				if (t >= 0 && t < m && score[t] > tmp[j])
					tmp[j] = score[t];
		}
		memcpy(score, tmp, (size_t)m * sizeof *score);
	}
}

/* The k best of score[0..m) one by one (ties: the lower index) into chosen[]. */
static void ref_pick(const float *score, int m, int k, bool *chosen)
{
	for (int c = 0; c < k; c++) {
		int best = -1;
		for (int j = 0; j < m; j++)
			if (!chosen[j] && (best < 0 || score[j] > score[best]))
				best = j;
		chosen[best] = true;
	}
}

/* The reference set of kv head g for a layer of `rows`. */
static void ref_select(const struct tokevict_opts *o, const struct stats *s, int g, int rows, bool *chosen)
{
	memset(chosen, 0, N * sizeof *chosen);
	float score[N];
	switch (o->policy) {
	case TOKEVICT_STREAMINGLLM: {
		int sinks = o->sinks < rows - 1 ? o->sinks : rows - 1;
		for (int t = 0; t < sinks; t++)
			chosen[t] = true;
		for (int t = N - (rows - sinks); t < N; t++)
			chosen[t] = true;
		return;
	}
	case TOKEVICT_TOVA:
		for (int j = 0; j < N - 1; j++) {
			double a = 0;
			for (int h = 0; h < NH; h++)
				a += s->last[h * N + j];
			score[j] = (float)(a / NH);
		}
		ref_pick(score, N - 1, rows - 1, chosen);
		chosen[N - 1] = true;
		return;
	default: {
		int w = o->window < rows ? o->window : rows, m = N - w;
		ref_scores(o, s, g, m, score);
		ref_pick(score, m, rows - w, chosen);
		for (int t = m; t < N; t++)
			chosen[t] = true;
	}
	}
}

static void test_select(void)
{
	static const int rows_list[] = { 1, 2, 5, 17, 39, 40 };
	static const int pools[] = { 1, 3, 7 };
	float scratch[3 * N];
	int32_t keep[NKVH * N];
	for (int p = 0; p < TOKEVICT_POLICY_COUNT; p++) {
		int bad = 0, cases = 0, last_missing = 0, unordered = 0;
		for (int rep = 0; rep < 4; rep++) {
			struct stats s;
			stats_random(&s);
			struct tokevict_layer_stats st = { .sum = s.sum, .sumsq = s.sq, .last = s.last, .n_obs = NOBS,
							   .n_head = NH, .n_kv_head = NKVH };
			for (size_t r = 0; r < sizeof rows_list / sizeof *rows_list; r++)
				for (size_t pi = 0; pi < sizeof pools / sizeof *pools; pi++) {
					struct tokevict_opts o;
					tokevict_opts_init(&o, (enum tokevict_policy)p);
					o.window = 6, o.sinks = 4, o.pool = pools[pi];
					const int rows = rows_list[r];
					tokevict_select_layer(&o, &st, N, NKVH, rows, scratch, keep);
					for (int g = 0; g < NKVH; g++) {
						bool want[N], got[N] = { false };
						ref_select(&o, &s, g, rows, want);
						for (int j = 0; j < rows; j++) {
							got[keep[g * rows + j]] = true;
							unordered += j > 0 && keep[g * rows + j] <= keep[g * rows + j - 1];
						}
						last_missing += keep[g * rows + rows - 1] != N - 1;
						bad += memcmp(want, got, sizeof want) != 0;
						cases++;
					}
				}
		}
		ok(bad == 0 && unordered == 0, "%s: the tokens of %d head selections as derived directly (%d differ, %d unordered)",
		   tokevict_policy_name(p), cases, bad, unordered);
		ok(last_missing == 0, "%s: every head keeps the last token", tokevict_policy_name(p));
	}
	/* streamingllm's exact set: sinks 0..3 and the 10 most recent */
	struct tokevict_opts o;
	tokevict_opts_init(&o, TOKEVICT_STREAMINGLLM);
	tokevict_select_layer(&o, NULL, N, NKVH, 14, scratch, keep);
	bool exact = true;
	for (int g = 0; g < NKVH; g++)
		for (int j = 0; j < 14; j++)
			exact &= keep[g * 14 + j] == (j < 4 ? j : N - 14 + j);
	ok(exact, "streamingllm keeps exactly the 4 sinks and the 10 most recent tokens in every head");
	/* snapkv's heads choose apart: the two kv heads of random statistics differ */
	struct stats s;
	stats_random(&s);
	struct tokevict_layer_stats st = { .sum = s.sum, .n_obs = NOBS, .n_head = NH, .n_kv_head = NKVH };
	tokevict_opts_init(&o, TOKEVICT_SNAPKV);
	o.window = 4, o.pool = 1;
	tokevict_select_layer(&o, &st, N, NKVH, 12, scratch, keep);
	ok(memcmp(keep, keep + 12, 12 * sizeof *keep) != 0, "snapkv: each kv head keeps its own tokens");
}

/* ---- layer budgets ---- */

static void test_budgets(void)
{
	enum { L = 8 };
	int32_t b[L];
	struct tokevict_opts o;
	tokevict_opts_init(&o, TOKEVICT_SNAPKV);
	o.budget = 50, o.window = 10;
	tokevict_layer_budgets(&o, L, 200, NULL, b);
	bool all = true;
	for (int l = 0; l < L; l++)
		all &= b[l] == 50;
	ok(all, "uniform: every layer gets the budget");

	tokevict_opts_init(&o, TOKEVICT_PYRAMIDKV);
	o.budget = 50, o.window = 10;
	tokevict_layer_budgets(&o, L, 200, NULL, b);
	long sum = 0;
	bool dec = true, range = true;
	for (int l = 0; l < L; l++) {
		sum += b[l];
		dec &= l == 0 || b[l] <= b[l - 1];
		range &= b[l] >= 10 && b[l] <= 200;
	}
	/* (50 - 10) on average: from 80 - 2 = 78 down to 40/20 = 2, plus the window */
	ok(sum == 50 * L && dec && range, "pyramid: the sum is kept (%ld), budgets shrink with depth", sum);
	ok(abs(b[0] - 88) <= 1 && abs(b[L - 1] - 12) <= 1, "pyramid: first layer %d (~88), last %d (~12)", b[0], b[L - 1]);
	tokevict_layer_budgets(&o, L, 60, NULL, b); /* layer 0 would want 88 of 60 tokens */
	sum = 0;
	range = true;
	for (int l = 0; l < L; l++)
		sum += b[l], range &= b[l] >= 10 && b[l] <= 60;
	ok(sum == 50 * L && range && b[0] == 60, "pyramid: a layer over the cache is capped, the rest goes to others (%ld)",
	   sum);

	tokevict_opts_init(&o, TOKEVICT_CAKE);
	o.budget = 30, o.window = 5;
	double pref[L] = { 1, 2, 3, 4, 1, 1, 1, 1 };
	tokevict_layer_budgets(&o, L, 400, pref, b);
	sum = 0;
	for (int l = 0; l < L; l++)
		sum += b[l];
	/* 25 * 8 = 200 rows besides the windows, in proportion 1:2:3:4:1:1:1:1 of 14 */
	bool prop = true;
	for (int l = 0; l < L; l++)
		prop &= abs((b[l] - 5) - (int)lround(200 * pref[l] / 14)) <= 1;
	ok(sum == 30 * L && prop, "cake: in proportion to the preferences (%d %d %d %d ...), the sum kept", b[0], b[1],
	   b[2], b[3]);
	double skew[L] = { 1000, 1, 1, 1, 1, 1, 1, 1 };
	tokevict_layer_budgets(&o, L, 40, skew, b);
	sum = 0;
	range = true;
	for (int l = 0; l < L; l++)
		sum += b[l], range &= b[l] >= 5 && b[l] <= 40;
	ok(sum == 30 * L && b[0] == 40 && range, "cake: a dominant layer is capped at the cache (%d), the excess shared",
	   b[0]);
}

/* ---- end to end on a tiny model ---- */

static struct model *tiny(const char *dir)
{
	char p[4400];
	struct synth_spec sp;
	struct model *m;
	snprintf(p, sizeof p, "%s/m.gguf", dir);
	if (synth_shape("tiny-llama", &sp) || (sp.seed = 11, synth_write(p, &sp)) || model_load(&m, p)) {
		printf("Bail out! tiny-llama: %s\n", kb_error());
		exit(1);
	}
	return m;
}

/* Read path's cache into a fresh kv of n_ctx slots; the header copied to *h. */
static void load(const struct model *m, const char *path, int n_ctx, struct kv_cache *kv, struct kvc_header *h)
{
	struct kvc_reader *r;
	const struct kvc_header *rh;
	ASSERT(kvc_reader_open_file(&r, path) == KB_OK && kvc_reader_next_header(r, &rh) == KB_OK);
	ASSERT(kvc_header_copy(h, rh) == KB_OK);
	ASSERT(kv_cache_init(kv, m, n_ctx) == KB_OK);
	if (kvfile_read(r, rh, m, kv) != KB_OK) {
		printf("Bail out! %s: %s\n", path, kb_error());
		exit(1);
	}
	kvc_reader_free(r);
}

/* Greedy tokens after the cache in kv (next position next_pos), from logits. */
static void greedy(const struct model *m, struct kv_cache *kv, const float *logits0, int32_t next_pos, int n,
		   int32_t *out)
{
	struct model_ws ws;
	ASSERT(model_ws_init(&ws, m, 1, kv->n_ctx) == KB_OK);
	memcpy(ws.logits, logits0, (size_t)m->hp.n_vocab * sizeof *ws.logits);
	for (int i = 0; i < n; i++) {
		int best = 0;
		for (int t = 1; t < m->hp.n_vocab; t++)
			best = ws.logits[t] > ws.logits[best] ? t : best;
		out[i] = best;
		int32_t p = next_pos + i;
		ASSERT(model_forward(m, &ws, kv, &out[i], &p, 1, ws.logits, false) == KB_OK);
	}
	model_ws_free(&ws);
}

static void test_end_to_end(void)
{
	const char *dir = tap_tmpdir();
	struct model *m = tiny(dir);
	enum { T = 48, GEN = 6 };
	struct kv_cache kv;
	struct model_ws ws;
	int32_t tok[T], pos[T];
	for (int i = 0; i < T; i++)
		tok[i] = 1 + (i * 37) % 500, pos[i] = i;
	ASSERT(kv_cache_init(&kv, m, T + GEN) == KB_OK && model_ws_init(&ws, m, T, T + GEN) == KB_OK);
	ASSERT(model_forward(m, &ws, &kv, tok, pos, T, ws.logits, false) == KB_OK);
	float *logits = malloc((size_t)m->hp.n_vocab * sizeof *logits);
	memcpy(logits, ws.logits, (size_t)m->hp.n_vocab * sizeof *logits);
	char full[4400];
	snprintf(full, sizeof full, "%s/full.kvc", dir);
	struct kvc_header fh;
	kvfile_header(&fh, m, &kv, 0, T, logits, KVC_F32, "test", 0, NULL);
	ASSERT(kvfile_write_path(full, &fh, &kv, 0) == KB_OK);

	/* the run leaves K and V as they were */
	size_t bytes = (size_t)m->hp.n_layer * kv.n_ctx * kv.kv_dim * sizeof(float);
	float *k0 = malloc(bytes), *v0 = malloc(bytes);
	memcpy(k0, kv.k, bytes), memcpy(v0, kv.v, bytes);
	for (int p = 0; p < TOKEVICT_POLICY_COUNT; p++) {
		struct tokevict_opts o;
		tokevict_opts_init(&o, (enum tokevict_policy)p);
		o.budget = 16, o.window = 4;
		if (p == TOKEVICT_PYRAMIDKV || p == TOKEVICT_CAKE)
			o.pyramid_beta = 4;
		struct tokevict_sel sel;
		int rc = tokevict_run(m, &kv, &o, &sel);
		ok(rc == KB_OK && !memcmp(k0, kv.k, bytes) && !memcmp(v0, kv.v, bytes),
		   "%s: selection made, the cache's K and V untouched (%s)", tokevict_policy_name(p), kb_error());
		if (rc)
			continue;
		char path[4400];
		snprintf(path, sizeof path, "%s/%s.kvc", dir, tokevict_policy_name(p));
		ok(tokevict_write(path, &fh, &kv, &sel, "test", 0, NULL) == KB_OK, "%s: written (%s)",
		   tokevict_policy_name(p), kb_error());
		struct kv_cache ev;
		struct kvc_header eh;
		load(m, path, T + GEN, &ev, &eh);
		long rows = 0;
		for (int l = 0; l < m->hp.n_layer; l++)
			rows += kvc_layer_rows(&eh, l);
		ok(rows == 16L * m->hp.n_layer, "%s: %ld rows in all (16 per layer on average)", tokevict_policy_name(p), rows);
		/* every kept row is the original token's K and V, at its position */
		int wrong = 0;
		const int hd = m->hp.head_dim, nslots = kvfile_slots(&eh);
		for (int l = 0; l < m->hp.n_layer; l++) {
			int r = sel.rows[l], off = nslots - r;
			size_t base = 0;
			for (int i = 0; i < l; i++)
				base += (size_t)sel.rows[i] * sel.n_kv_head;
			for (int g = 0; g < sel.n_kv_head; g++)
				for (int j = 0; j < r; j++) {
					int t = sel.keep[base + (size_t)g * r + j], s = off + j;
					int32_t hp = ev.hpos ? kv_hpos(&ev, l, g)[s] : ev.pos[s];
					wrong += hp != t;
					wrong += memcmp(kv_k(&ev, l, s) + g * hd, kv_k(&kv, l, t) + g * hd, hd * sizeof(float)) != 0;
					wrong += memcmp(kv_v(&ev, l, s) + g * hd, kv_v(&kv, l, t) + g * hd, hd * sizeof(float)) != 0;
				}
		}
		ok(wrong == 0, "%s: read back, each head's rows are its tokens' K and V at their positions (%d wrong; %s)",
		   tokevict_policy_name(p), wrong, kvc_is_sparse(&eh) ? "sparse" : "dense");
		if (p == TOKEVICT_STREAMINGLLM)
			ok(!kvc_is_sparse(&eh), "streamingllm: the same tokens everywhere make a dense cache");
		if (p == TOKEVICT_SNAPKV)
			ok(kvc_is_sparse(&eh), "snapkv: heads keeping their own tokens make a sparse cache");
		{
			/* one step from the evicted cache equals one step from the whole cache with
			 * every token a head dropped masked out of that head (by position) */
			struct kv_cache ref;
			struct kvc_header rh;
			load(m, full, T + GEN, &ref, &rh);
			ASSERT(kv_cache_per_head(&ref) == KB_OK);
			size_t base = 0;
			for (int l = 0; l < m->hp.n_layer; l++) {
				int r = sel.rows[l];
				for (int g = 0; g < sel.n_kv_head; g++) {
					bool kept[T] = { false };
					for (int j = 0; j < r; j++)
						kept[sel.keep[base + (size_t)g * r + j]] = true;
					for (int t = 0; t < T; t++)
						if (!kept[t])
							kv_hpos(&ref, l, g)[t] = INT32_MAX;
				}
				base += (size_t)r * sel.n_kv_head;
			}
			struct model_ws w1, w2;
			ASSERT(model_ws_init(&w1, m, 1, T + GEN) == KB_OK && model_ws_init(&w2, m, 1, T + GEN) == KB_OK);
			int32_t t = 7, ps = T;
			ASSERT(model_forward(m, &w1, &ref, &t, &ps, 1, w1.logits, false) == KB_OK);
			ASSERT(model_forward(m, &w2, &ev, &t, &ps, 1, w2.logits, false) == KB_OK);
			double err = 0;
			for (int i = 0; i < m->hp.n_vocab; i++)
				err = fmax(err, fabs(w1.logits[i] - w2.logits[i]));
			ok(err < 1e-5, "%s: the next token's logits equal the whole cache's with each head's dropped tokens "
			   "masked (err %.2g)", tokevict_policy_name(p), err);
			model_ws_free(&w1), model_ws_free(&w2);
			kv_cache_free(&ref), kvc_header_free(&rh);
		}
		kv_cache_free(&ev);
		kvc_header_free(&eh);
		tokevict_sel_free(&sel);
	}

	/* a budget of every token: the identity (same tokens decoded) */
	struct tokevict_opts o;
	tokevict_opts_init(&o, TOKEVICT_SNAPKV);
	o.budget = T;
	struct tokevict_sel sel;
	ASSERT(tokevict_run(m, &kv, &o, &sel) == KB_OK);
	char same[4400];
	snprintf(same, sizeof same, "%s/same.kvc", dir);
	ASSERT(tokevict_write(same, &fh, &kv, &sel, "test", 0, NULL) == KB_OK);
	tokevict_sel_free(&sel);
	struct kv_cache a, b;
	struct kvc_header ah, bh;
	load(m, full, T + GEN, &a, &ah);
	load(m, same, T + GEN, &b, &bh);
	int32_t ga[GEN], gb[GEN];
	greedy(m, &a, logits, T, GEN, ga);
	greedy(m, &b, logits, T, GEN, gb);
	ok(!kvc_is_sparse(&bh) && !memcmp(ga, gb, sizeof ga) && !memcmp(a.k, b.k, bytes),
	   "a budget of all %d tokens is the identity: the same cache, the same tokens decoded", T);
	kv_cache_free(&a), kv_cache_free(&b), kvc_header_free(&ah), kvc_header_free(&bh);

	/* a sparse cache whose heads agree decodes as the dense cache of its tokens */
	{
		struct tokevict_opts so;
		tokevict_opts_init(&so, TOKEVICT_STREAMINGLLM);
		so.budget = 20;
		struct tokevict_sel s1;
		ASSERT(tokevict_run(NULL, &kv, &so, &s1) == KB_OK);
		char dense[4400], sparse[4400];
		snprintf(dense, sizeof dense, "%s/agree-dense.kvc", dir);
		snprintf(sparse, sizeof sparse, "%s/agree-sparse.kvc", dir);
		ASSERT(tokevict_write(dense, &fh, &kv, &s1, "test", 0, NULL) == KB_OK);
		/* the same selection written as sparse: layer 1 keeps 4 fewer (its first 4 rows) */
		struct kvc_header sh = fh;
		int32_t rows[2] = { 20, 16 }, keep[2 * 20 + 2 * 16];
		ASSERT(m->hp.n_layer == 2 && m->hp.n_kv_head == 2);
		for (int g = 0; g < 2; g++) {
			memcpy(keep + g * 20, s1.keep, 20 * sizeof *keep);
			memcpy(keep + 40 + g * 16, s1.keep + 4, 16 * sizeof *keep);
		}
		sh.layer_rows = rows, sh.keep = keep;
		struct tokevict_sel s2 = { .n_layer = 2, .n_kv_head = 2, .n = T, .rows = rows, .keep = keep };
		ASSERT(tokevict_write(sparse, &sh, &kv, &s2, "test", 0, NULL) == KB_OK);
		struct kv_cache d1, d2;
		struct kvc_header h1, h2;
		load(m, dense, T + GEN, &d1, &h1);
		load(m, sparse, T + GEN, &d2, &h2);
		ok(kvc_is_sparse(&h2) && d2.hpos && kvfile_slots(&h2) == 20, "a sparse cache with a shorter layer: 20 slots");
		/* the dense reference drops the same 4 tokens from layer 1 by position */
		ASSERT(kv_cache_per_head(&d1) == KB_OK);
		for (int g = 0; g < 2; g++)
			for (int j = 0; j < 4; j++)
				kv_hpos(&d1, 1, g)[j] = INT32_MAX;
		struct model_ws w1, w2;
		ASSERT(model_ws_init(&w1, m, 1, T + GEN) == KB_OK && model_ws_init(&w2, m, 1, T + GEN) == KB_OK);
		int32_t t = 7, p = T;
		ASSERT(model_forward(m, &w1, &d1, &t, &p, 1, w1.logits, false) == KB_OK);
		ASSERT(model_forward(m, &w2, &d2, &t, &p, 1, w2.logits, false) == KB_OK);
		double err = 0;
		for (int i = 0; i < m->hp.n_vocab; i++)
			err = fmax(err, fabs(w1.logits[i] - w2.logits[i]));
		ok(err < 1e-5, "its logits equal those of the dense cache with the same tokens masked (err %.2g)", err);
		model_ws_free(&w1), model_ws_free(&w2);
		kv_cache_free(&d1), kv_cache_free(&d2), kvc_header_free(&h1), kvc_header_free(&h2);
		tokevict_sel_free(&s1);
	}

	/* bad input */
	tokevict_opts_init(&o, TOKEVICT_SNAPKV);
	o.budget = 0;
	ok(tokevict_run(m, &kv, &o, &sel) == KB_ERR_ARG, "a budget of 0 is refused: %s", kb_error());
	o.budget = T + 1;
	ok(tokevict_run(m, &kv, &o, &sel) == KB_ERR_ARG, "a budget over the cache is refused: %s", kb_error());
	o.budget = 8;
	ok(tokevict_run(NULL, &kv, &o, &sel) == KB_ERR_ARG && strstr(kb_error(), "-m MODEL"),
	   "snapkv without a model is refused: %s", kb_error());
	free(k0), free(v0), free(logits);
	model_ws_free(&ws);
	kv_cache_free(&kv);
	model_free(m);
}

/* Online eviction while decoding: streamingllm's logits at every step equal
 * those of a whole cache with everything but the sinks and the recent tokens
 * masked; every policy keeps kv->n at the budget, the newest token, and (for
 * streamingllm and lazyeviction) the sinks. */
static void test_online(void)
{
	const char *dir = tap_tmpdir();
	struct model *m = tiny(dir);
	enum { P = 10, STEPS = 30, B = 12, S = 2 };
	const int L = m->hp.n_layer, NKV = m->hp.n_kv_head, V = m->hp.n_vocab;
	const size_t qd = (size_t)m->hp.n_head * m->hp.head_dim;
	for (int policy = 0; policy < TOKEVICT_ONLINE_COUNT; policy++) {
		struct kv_cache a, ref;
		struct model_ws wa, wr;
		ASSERT(kv_cache_init(&a, m, B + 1) == KB_OK && kv_cache_init(&ref, m, P + STEPS + 1) == KB_OK);
		ASSERT(model_ws_init(&wa, m, P, B + 1) == KB_OK && model_ws_init(&wr, m, P, P + STEPS + 1) == KB_OK);
		wa.q_probe = malloc((size_t)L * qd * sizeof(float));
		int32_t tok[P], pos[P];
		for (int i = 0; i < P; i++)
			tok[i] = 3 + i * 11, pos[i] = i;
		ASSERT(model_forward(m, &wa, &a, tok, pos, P, wa.logits, false) == KB_OK);
		ASSERT(model_forward(m, &wr, &ref, tok, pos, P, wr.logits, false) == KB_OK);
		ASSERT(kv_cache_per_head(&ref) == KB_OK);
		struct tokevict_online *ev;
		ASSERT(tokevict_online_init(&ev, (enum tokevict_online_policy)policy, B, S, 3, m, &a) == KB_OK);
		double err = 0;
		int bad_n = 0, lost_newest = 0, lost_sink = 0;
		int32_t next = 5;
		for (int t = 0; t < STEPS; t++) {
			int32_t p = P + t;
			ASSERT(model_forward(m, &wa, &a, &next, &p, 1, wa.logits, false) == KB_OK);
			ASSERT(tokevict_online_step(ev, &a, wa.q_probe, p) == KB_OK);
			bad_n += a.n != (P + t + 1 < B ? P + t + 1 : B);
			for (int l = 0; l < L; l++)
				for (int g = 0; g < NKV; g++) {
					int has_new = 0, has_sink[S] = { 0 };
					for (int sl = 0; sl < a.n; sl++) {
						int32_t hp = a.hpos ? kv_hpos(&a, l, g)[sl] : a.pos[sl];
						has_new |= hp == p;
						for (int k = 0; k < S; k++)
							has_sink[k] |= hp == k;
					}
					lost_newest += !has_new;
					for (int k = 0; k < S; k++)
						lost_sink += !has_sink[k] && (policy == TOKEVICT_ONLINE_STREAMINGLLM ||
									       policy == TOKEVICT_ONLINE_LAZY);
				}
			if (policy == TOKEVICT_ONLINE_STREAMINGLLM) {
				/* the reference: every token so far, those streamingllm dropped masked out */
				int32_t rp = P + t;
				for (int l = 0; l < L; l++)
					for (int g = 0; g < NKV; g++)
						for (int q = 0; q < ref.n; q++) {
							int32_t ps = ref.pos[q];
							bool kept = ps < S || ps >= rp - (B - S); /* the B slots before the step, and the new token */
							kv_hpos(&ref, l, g)[q] = kept ? ps : INT32_MAX;
						}
				ASSERT(model_forward(m, &wr, &ref, &next, &rp, 1, wr.logits, false) == KB_OK);
				for (int i = 0; i < V; i++)
					err = fmax(err, fabs(wa.logits[i] - wr.logits[i]));
			}
			int best = 0;
			for (int i = 1; i < V; i++)
				best = wa.logits[i] > wa.logits[best] ? i : best;
			next = best;
		}
		const char *name = tokevict_online_name(policy);
		ok(bad_n == 0, "online %s: the cache holds min(tokens, %d) slots after every step", name, B);
		ok(lost_newest == 0, "online %s: every head keeps the newest token", name);
		if (policy == TOKEVICT_ONLINE_STREAMINGLLM || policy == TOKEVICT_ONLINE_LAZY)
			ok(lost_sink == 0, "online %s: every head keeps the %d sinks", name, S);
		if (policy == TOKEVICT_ONLINE_STREAMINGLLM)
			ok(err < 1e-4, "online streamingllm: %d steps' logits equal the whole cache's with the dropped "
			   "tokens masked (err %.2g)", STEPS, err);
		tokevict_online_free(ev);
		free(wa.q_probe);
		wa.q_probe = NULL;
		model_ws_free(&wa), model_ws_free(&wr);
		kv_cache_free(&a), kv_cache_free(&ref);
	}
	struct kv_cache k;
	ASSERT(kv_cache_init(&k, m, 8) == KB_OK);
	struct tokevict_online *ev;
	ok(tokevict_online_init(&ev, TOKEVICT_ONLINE_TOVA, 8, 4, 4, m, &k) == KB_ERR_ARG,
	   "a budget that leaves no slot for the new token is refused: %s", kb_error());
	kv_cache_free(&k);
	model_free(m);
}

int main(void)
{
	tap_seed();
	test_accumulate();
	test_select();
	test_budgets();
	test_end_to_end();
	test_online();
	return done_testing();
}
