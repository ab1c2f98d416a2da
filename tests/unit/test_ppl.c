/* test_ppl — perplexity chunking (common/ppl.c and the ppl mode of
 * common/chunk.c):
 *   - the boundary rule (ppl_minima) on hand-made perplexity sequences: dips,
 *     flat stretches, thresholds, NaN, the ends; no model;
 *   - with stories260K (skipped when ../shared is absent): per-token
 *     log-probabilities from the windowed code equal a direct computation (one
 *     model_forward over the text, log-softmax per row, here) when one window
 *     holds the text, and equal a direct computation over each token's own
 *     window context when windows are small; sentence perplexities the same;
 *   - the chunker's ppl mode: without a budget its pieces end exactly after
 *     the sentences the rule picks from directly computed perplexities
 *     (tokens placed here by decoding, each in the sentence of its last
 *     byte); with budgets the chunks cover the document, their texts are its
 *     bytes and their tokens are within the budget; a higher threshold never
 *     gives more pieces; bad options are refused. */
#include <math.h>
#include <stdbool.h>

#include "chunk.h"
#include "model.h"
#include "ppl.h"
#include "tap.h"
#include "tok.h"
#include "util.h"

/* ---- the rule, no model ---- */

/* The cuts of ppl_minima as a string of indices: "1,3,6". Static buffer. */
static const char *minima(const double *v, size_t n, double thr)
{
	static char buf[256];
	bool cut[32];
	size_t k = ppl_minima(v, n, thr, cut), len = 0, seen = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		if (cut[i]) {
			len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%zu", seen ? "," : "", i);
			seen++;
		}
	if (seen != k)
		return "!count";
	return buf;
}

static void test_rule(void)
{
	const double v[] = { 5, 3, 6, 2, 2, 7, 4, 9 };
	ok(!strcmp(minima(v, 8, 0), "1,3,6"), "rule, threshold 0: every strict dip and a dip into a flat stretch (%s)",
	   minima(v, 8, 0));
	ok(!strcmp(minima(v, 8, 2.5), "3,6"), "rule, threshold 2.5: dips of more than 2.5 on both sides (%s)",
	   minima(v, 8, 2.5));
	ok(!strcmp(minima(v, 8, 3.5), "3"), "rule, threshold 3.5: only the dip of 4 into the flat stretch (%s)",
	   minima(v, 8, 3.5));
	ok(!strcmp(minima(v, 8, 3), "3"), "rule: a dip of exactly the threshold is not enough (%s)", minima(v, 8, 3));
	const double w[] = { 1, 2, 3, 4, 5 }, f[] = { 3, 3, 3 }, e[] = { 1, 9, 1 };
	ok(!strcmp(minima(w, 5, 0), "") && !strcmp(minima(f, 3, 0), "") && !strcmp(minima(e, 3, 0), ""),
	   "rule: no dip in a rising, a flat or a peaked sequence; the ends never count");
	const double nan_[] = { 4, NAN, 5, 1, 6, NAN, 0.5, 8 };
	ok(!strcmp(minima(nan_, 8, 0), "3"), "rule: a NaN is neither a dip nor the side of one (%s)",
	   minima(nan_, 8, 0));
	ok(!strcmp(minima(v, 0, 0), "") && !strcmp(minima(v, 1, 0), "") && !strcmp(minima(v, 2, 0), ""),
	   "rule: fewer than 3 sentences, no cut");
	// the depths: dip(i) > threshold (and > 0) is exactly the rule
	ok(ppl_dip(v, 8, 1) == 2 && ppl_dip(v, 8, 3) == 4 && ppl_dip(v, 8, 4) == 0 && ppl_dip(v, 8, 6) == 3 &&
		   ppl_dip(v, 8, 2) == -4 && isnan(ppl_dip(v, 8, 0)) && isnan(ppl_dip(v, 8, 7)) &&
		   isnan(ppl_dip(nan_, 8, 2)),
	   "ppl_dip: the smaller drop, the drop before a flat stretch, NaN at the ends and beside a NaN");
	bool same = true;
	for (double thr = 0; thr < 5; thr += 0.5) {
		bool cut[8];
		ppl_minima(v, 8, thr, cut);
		for (size_t i = 0; i < 8; i++)
			same &= cut[i] == (ppl_dip(v, 8, i) > thr && ppl_dip(v, 8, i) > 0);
	}
	ok(same, "ppl_minima cuts where ppl_dip is above the threshold, for thresholds 0 .. 4.5");
	float lp[] = { -1, -2, NAN, -3, -0.5f, -0.5f };
	size_t ends[] = { 2, 4, 4, 6 };
	double pp[4];
	ppl_spans(lp, ends, 4, pp);
	ok(fabs(pp[0] - exp(1.5)) < 1e-9 && fabs(pp[1] - exp(3.0)) < 1e-9 && isnan(pp[2]) && fabs(pp[3] - exp(0.5)) < 1e-9,
	   "ppl_spans: exp(-mean) over each span's tokens, NaN skipped, an empty span NaN");
}

/* ---- with a model ---- */

static const char *story =
	"Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
	"One day, she saw a big red ball in the park. She ran to the ball and kicked it. The ball went very high!\n\n"
	"Lily's mom called her home. \"Lily, it is time to eat,\" she said. Lily ran home and ate her soup. "
	"It was yummy. After dinner, Lily went to bed. She dreamed of the big red ball.\n\n"
	"Tom was a small dog. He liked to dig in the garden. One day, he found a bone. He was very happy. "
	"He showed the bone to his friend, the cat. The cat did not like bones. Tom and the cat played together all day.\n";

/* ln p(tokens[i] | BOS tokens[a..i)) for i in [a + 1 - has_bos, b) by one forward pass over BOS tokens[a..b),
 * into lp[i]. */
static bool direct(const struct model *m, const int32_t *tokens, size_t a, size_t b, float *lp)
{
	int32_t bos = tok_add_bos(m->tok) ? tok_bos(m->tok) : -1;
	int hb = bos >= 0, n = hb + (int)(b - a), nv = m->hp.n_vocab;
	int32_t *seq = malloc((size_t)n * sizeof *seq), *pos = malloc((size_t)n * sizeof *pos);
	float *logits = malloc((size_t)n * (size_t)nv * sizeof *logits);
	struct kv_cache kv;
	struct model_ws ws;
	bool good = seq && pos && logits && !kv_cache_init(&kv, m, n) && !model_ws_init(&ws, m, n, n);
	if (good) {
		if (hb)
			seq[0] = bos;
		for (int i = 0; i < n; i++) {
			if (i >= hb)
				seq[i] = tokens[a + (size_t)(i - hb)];
			pos[i] = i;
		}
		good = !model_forward(m, &ws, &kv, seq, pos, n, logits, true);
		for (int r = 0; good && r + 1 < n; r++) { // row r predicts seq[r + 1]
			const float *row = logits + (size_t)r * nv;
			double mx = row[0], s = 0;
			for (int k = 1; k < nv; k++)
				mx = row[k] > mx ? row[k] : mx;
			for (int k = 0; k < nv; k++)
				s += exp(row[k] - mx);
			lp[a + (size_t)(r + 1 - hb)] = (float)(row[seq[r + 1]] - mx - log(s));
		}
		kv_cache_free(&kv);
		model_ws_free(&ws);
	}
	free(seq);
	free(pos);
	free(logits);
	return good;
}

static double max_diff(const float *x, const float *y, size_t from, size_t n)
{
	double d = 0;
	for (size_t i = from; i < n; i++)
		d = fmax(d, fabs((double)x[i] - y[i]));
	return d;
}

static void test_windows(const struct model *m, const int32_t *ids, size_t n)
{
	int hb = tok_add_bos(m->tok) && tok_bos(m->tok) >= 0;
	float *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
	struct ppl *p = NULL;
	// one window holds the whole text
	bool good = want && got && direct(m, ids, 0, n, want) &&
		    !ppl_init(&p, m, &(struct ppl_opts){ .window = (int)n + hb }) && !ppl_logprobs(p, ids, n, got);
	double d = good ? max_diff(got, want, hb ? 0 : 1, n) : -1;
	ok(good && d < 1e-5, "one window of %zu tokens: log-probabilities equal a direct forward pass (max diff %.2g)",
	   n + hb, d);
	ppl_free(p);
	p = NULL;

	// small windows: each token is predicted from its own window's context
	const int win = 32, ctx = 8;
	good = want && got && !ppl_init(&p, m, &(struct ppl_opts){ .window = win, .context = ctx }) &&
	       !ppl_logprobs(p, ids, n, got);
	size_t windows = 0;
	d = 0;
	for (size_t s = hb ? 0 : 1; good && s < n; windows++) {
		size_t a = s == 0 ? 0 : s - (s < (size_t)ctx ? s : (size_t)ctx), b = a + (size_t)(win - hb);
		b = b < n ? b : n;
		for (size_t i = s; good && i < b; i++) { // token i alone, from the window's start
			good = direct(m, ids, a, i + 1, want);
			d = fmax(d, fabs((double)got[i] - want[i]));
		}
		s = b;
	}
	ok(good && d < 1e-5 && windows > 3,
	   "windows of %d, context %d (%zu windows): every token's log-probability equals a direct pass over its window "
	   "(max diff %.2g)", win, ctx, windows, d);
	ppl_free(p);
	p = NULL;

	// defaults: the training context (128 for stories260K), a quarter of it read again
	good = !ppl_init(&p, m, &(struct ppl_opts){ 0 });
	ok(good && ppl_window(p) == (m->hp.n_ctx_train < PPL_WINDOW_MAX ? m->hp.n_ctx_train : PPL_WINDOW_MAX) &&
		   ppl_context(p) == ppl_window(p) / 4,
	   "default window %d (the training context), context %d", good ? ppl_window(p) : 0, good ? ppl_context(p) : 0);
	ppl_free(p);
	ok(ppl_init(&p, m, &(struct ppl_opts){ .window = 16, .context = 15 }) == KB_ERR_ARG && !p,
	   "a context that leaves nothing to score is refused: %s", kb_error());
	free(want);
	free(got);
}

/* The byte offset where each token of text starts (decoding, as chunk.c does;
 * SentencePiece's leading space dropped). NULL when decoding does not give the
 * text back. */
static size_t *token_offsets(const struct tok *t, const char *text, size_t len, const int32_t *ids, size_t n)
{
	size_t *o = malloc((n + 1) * sizeof *o), used = 0;
	char *buf = malloc(len + 64 + 16 * n);
	for (size_t i = 0; o && buf && i < n; i++) {
		o[i] = used;
		used += tok_decode(t, ids[i], false, buf + used, len + 64 + 16 * n - used);
	}
	size_t skip = used == len + 1 && buf && buf[0] == ' ';
	bool good = o && buf && used == len + skip && !memcmp(buf + skip, text, len);
	free(buf);
	if (!good) {
		free(o);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		o[i] = o[i] > skip ? o[i] - skip : 0;
	return o;
}

/* Chunk text with o: the chunk ends into ends[] (at most cap), their count; (size_t)-1 on error. */
static size_t chunk_ends(const struct chunk_opts *o, const char *text, size_t len, size_t *ends, size_t cap)
{
	struct chunker *c;
	const struct chunk *v;
	size_t n, inv;
	if (chunker_init(&c, o) || chunker_run(c, text, len, &v, &n, &inv)) {
		diag("%s", kb_error());
		return (size_t)-1;
	}
	for (size_t i = 0; i < n && i < cap; i++)
		ends[i] = v[i].end;
	chunker_free(c);
	return n;
}

/* The ppl mode without a budget against the rule applied to perplexities computed here. */
static void test_boundaries(const struct model *m, const int32_t *ids, size_t n)
{
	size_t len = strlen(story), sent[64], got[64];
	struct chunk_opts so = { .by = CHUNK_BY_SENTENCE, .tok = m->tok };
	size_t ns = chunk_ends(&so, story, len, sent, 64);
	size_t *offs = token_offsets(m->tok, story, len, ids, n);
	float *lp = calloc(n, sizeof *lp);
	bool good = ns != (size_t)-1 && ns >= 10 && ns <= 64 && offs && lp && direct(m, ids, 0, n, lp);
	if (!tok_add_bos(m->tok) && lp)
		lp[0] = NAN;
	// sentence perplexities, each token in the sentence of its last byte
	double sum[64] = { 0 }, pp[64];
	size_t cnt[64] = { 0 };
	for (size_t k = 0, si = 0; good && k < n; k++) {
		size_t end = k + 1 < n ? offs[k + 1] : len, last = end > offs[k] ? end - 1 : offs[k];
		while (last >= sent[si])
			si++;
		if (!isnan(lp[k])) {
			sum[si] += lp[k];
			cnt[si]++;
		}
	}
	bool cut[64];
	for (size_t i = 0; good && i < ns; i++)
		pp[i] = cnt[i] ? exp(-sum[i] / (double)cnt[i]) : NAN;
	size_t want[64], nw = 0;
	if (good) {
		ppl_minima(pp, ns, 0, cut);
		for (size_t i = 0; i < ns; i++)
			if (cut[i] || i + 1 == ns)
				want[nw++] = sent[i];
	}
	struct chunk_opts po = { .by = CHUNK_BY_PPL, .tok = m->tok, .model = m };
	size_t ng = good ? chunk_ends(&po, story, len, got, 64) : 0;
	good = good && ng == nw && !memcmp(got, want, nw * sizeof *got) && nw > 1 && nw < ns;
	ok(good, "no budget: the %zu pieces of %zu sentences end where the rule puts them on directly computed "
		 "perplexities", nw, ns);
	if (!good)
		for (size_t i = 0; i < ns; i++)
			diag("sentence %zu ends at %zu, ppl %.3f%s", i, sent[i], pp[i], cut[i] ? " (dip)" : "");

	// a higher threshold never adds a piece; a huge one leaves the document whole
	size_t prev = ng, more = 0;
	bool fewer = good;
	for (double thr = 0.5; fewer && thr <= 64; thr *= 2) {
		po.ppl_threshold = thr;
		size_t k = chunk_ends(&po, story, len, got, 64);
		fewer = k != (size_t)-1 && k <= prev;
		more += k < prev;
		prev = k;
	}
	po.ppl_threshold = 1e6;
	ok(fewer && more > 0 && chunk_ends(&po, story, len, got, 64) == 1 && got[0] == len,
	   "thresholds 0.5 .. 64: never more pieces (fewer %zu times); 1e6: the document whole", more);

	// what -v reports: the sentences and dips seen, a threshold at the depths' median
	struct chunker *c;
	const struct chunk *v;
	size_t nv, inv;
	struct chunk_ppl_stats st = { 0 }, st2 = { 0 };
	po.ppl_threshold = 0;
	bool sgood = good && !chunker_init(&c, &po) && !chunker_run(c, story, len, &v, &nv, &inv);
	if (sgood) {
		chunker_ppl_stats(c, &st);
		chunker_free(c);
	}
	size_t above = 0;
	double want_med = NAN;
	if (sgood) {
		double depth[64];
		size_t nd = 0;
		for (size_t i = 0; i < ns; i++)
			if (ppl_dip(pp, ns, i) > 0)
				depth[nd++] = ppl_dip(pp, ns, i);
		for (size_t i = 0; i < nd; i++)
			above += depth[i] > st.dip[2];
		double sorted[64];
		memcpy(sorted, pp, ns * sizeof *pp);
		for (size_t i = 1; i < ns; i++) // insertion sort: the median of ns values
			for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
				double t = sorted[j];
				sorted[j] = sorted[j - 1], sorted[j - 1] = t;
			}
		want_med = ns % 2 ? sorted[ns / 2] : (sorted[ns / 2 - 1] + sorted[ns / 2]) / 2;
		sgood = st.n_sentences == ns && st.n_dips == nw - 1 && st.n_cuts == st.n_dips &&
			fabs(st.ppl[2] - want_med) < 1e-6 * want_med && st.dip[0] <= st.dip[2] && st.dip[2] <= st.dip[4];
	}
	ok(sgood, "stats: %zu sentences, %zu dips = the cuts at 0, median perplexity %.4f (here %.4f)", st.n_sentences,
	   st.n_dips, sgood ? st.ppl[2] : 0.0, want_med);
	po.ppl_threshold = sgood ? st.dip[2] : 0;
	sgood = sgood && !chunker_init(&c, &po) && !chunker_run(c, story, len, &v, &nv, &inv);
	if (sgood) {
		chunker_ppl_stats(c, &st2);
		chunker_free(c);
	}
	ok(sgood && st2.n_cuts == above && st2.n_dips == st.n_dips,
	   "stats: at the depths' median %.3f, the %zu dips deeper than it are cut", po.ppl_threshold, above);
	free(offs);
	free(lp);
}

/* Chunks cover the document, texts are its bytes, tokens counted alone within the budget. */
static bool covers(const struct chunk_opts *o, const char *doc, size_t len, size_t *n_out)
{
	struct chunker *c;
	const struct chunk *v;
	size_t n, inv;
	if (chunker_init(&c, o) || chunker_run(c, doc, len, &v, &n, &inv)) {
		diag("%s", kb_error());
		return false;
	}
	bool good = n > 0 && v[0].start == 0 && v[n - 1].end == len;
	for (size_t i = 0; good && i < n; i++) {
		int32_t *ids;
		size_t k = 0;
		good = (i == 0 || v[i].start == v[i - 1].end) && v[i].len == v[i].end - v[i].start &&
		       !memcmp(v[i].text, doc + v[i].start, v[i].len) &&
		       !tok_encode(o->tok, v[i].text, v[i].len, false, false, &ids, &k);
		if (good)
			free(ids);
		good = good && k == v[i].tokens && (!o->max_tokens || k <= o->max_tokens || v[i].len == 1);
		if (!good)
			diag("chunk %zu [%zu, %zu): %zu tokens (%zu counted)", i, v[i].start, v[i].end, v[i].tokens, k);
	}
	*n_out = n;
	chunker_free(c);
	return good;
}

static void test_budgets(const struct model *m)
{
	size_t len;
	char *doc = NULL;
	const char *path = tap_shared("data/text/gutenberg_pg11_alice_in_wonderland.txt");
	if (!path || kb_read_file(path, &doc, &len)) {
		ok(1, "# SKIP data/text/gutenberg_pg11_alice_in_wonderland.txt is absent");
		return;
	}
	size_t off = len / 3, sl = len - off < 30000 ? len - off : 30000, n[4];
	struct chunk_opts o = { .by = CHUNK_BY_PPL, .tok = m->tok, .model = m };
	static const size_t budgets[] = { 0, 256, 64, 8 };
	bool good = true;
	for (int i = 0; i < 4 && good; i++) {
		o.max_tokens = budgets[i];
		good = covers(&o, doc + off, sl, &n[i]);
	}
	ok(good && n[1] < n[2] && n[2] < n[3],
	   "30 KB of alice, budgets none/256/64/8: chunks cover it, texts are its bytes, tokens within the budget "
	   "(%zu/%zu/%zu/%zu chunks)", n[0], n[1], n[2], n[3]);
	o.max_tokens = 128;
	o.min_tokens = 48;
	o.ppl_threshold = 2;
	ok(covers(&o, doc + off, sl, &n[0]), "budget 128, min 48, threshold 2: the same (%zu chunks)", n[0]);
	o = (struct chunk_opts){ .by = CHUNK_BY_PPL, .tok = m->tok, .model = m };
	size_t k;
	ok(covers(&o, "One sentence only.", 18, &k) && k == 1, "one sentence: one chunk");
	free(doc);
}

static void test_options(const struct model *m)
{
	struct chunker *c = NULL;
	struct chunk_opts o = { .by = CHUNK_BY_PPL, .tok = m ? m->tok : NULL, .max_tokens = 64 };
	ok(chunker_init(&c, &o) == KB_ERR_ARG && !c, "ppl without a model is refused: %s", kb_error());
	if (!m)
		return;
	o.model = m;
	o.ppl_threshold = -1;
	ok(chunker_init(&c, &o) == KB_ERR_ARG && !c, "a negative threshold is refused: %s", kb_error());
	o.ppl_threshold = NAN;
	ok(chunker_init(&c, &o) == KB_ERR_ARG && !c, "a NaN threshold is refused");
	o.ppl_threshold = 0;
	o.ppl_window = 1;
	ok(chunker_init(&c, &o) == KB_ERR_ARG && !c, "a window of 1 is refused: %s", kb_error());
	enum chunk_by by;
	ok(chunk_by_parse("ppl", &by) == KB_OK && by == CHUNK_BY_PPL && !strcmp(chunk_by_name(CHUNK_BY_PPL), "ppl"),
	   "chunk_by_parse(\"ppl\")");
}

int main(void)
{
	test_rule();
	const char *path = tap_shared("models/stories260Ktok512.gguf");
	struct model *m = NULL;
	if (!path) {
		diag("models/stories260Ktok512.gguf is absent: the model tests are skipped");
		test_options(NULL);
		return done_testing();
	}
	if (!ok(model_load(&m, path) == KB_OK, "stories260K loads")) {
		diag("%s", kb_error());
		return done_testing();
	}
	int32_t *ids;
	size_t n;
	int rc = tok_encode(m->tok, story, strlen(story), false, false, &ids, &n);
	if (!ok(!rc && n > 150, "the story: %zu tokens", rc ? 0 : n))
		return done_testing();
	test_windows(m, ids, n);
	test_boundaries(m, ids, n);
	test_budgets(m);
	test_options(m);
	free(ids);
	model_free(m);
	return done_testing();
}
