/* test_similar.c — reuse across edits: the token alignment (against a plain
 * LCS table), MinHash sketches and bands; an edited chunk rebuilt from its
 * parent (unchanged: the parent itself; ratio 1.0: a fresh prefill, bit for
 * bit; edits at the start, middle and end); finding the parent in the store by
 * (doc, seq) and by the bands, an unrelated chunk rejected, and a miss of
 * chunkcache_load built from it with its parent recorded. Synthetic model, no
 * ../shared needed. */
#include <stdlib.h>
#include <string.h>

#include "chunkcache.h"
#include "similar.h"
#include "store.h"
#include "synth.h"
#include "tap.h"

enum { MAXTOK = 256 };

static int rand_tok(int vocab)
{
	return 3 + (int)tap_randf(0, (float)(vocab - 3));
}

/* The length of a longest common subsequence, by the textbook table. */
static int lcs_len(const int32_t *a, int n, const int32_t *b, int m)
{
	int *t = calloc((size_t)(n + 1) * (m + 1), sizeof *t);
	ASSERT(t);
	for (int i = 1; i <= n; i++)
		for (int j = 1; j <= m; j++)
			t[i * (m + 1) + j] = a[i - 1] == b[j - 1] ? t[(i - 1) * (m + 1) + j - 1] + 1
				: t[(i - 1) * (m + 1) + j] > t[i * (m + 1) + j - 1] ? t[(i - 1) * (m + 1) + j]
				: t[i * (m + 1) + j - 1];
	int r = t[n * (m + 1) + m];
	free(t);
	return r;
}

/* from[] is an alignment: increasing, in range, equal tokens, and counts k. */
static bool valid_alignment(const int32_t *a, int n, const int32_t *b, int m, const int32_t *from, int k)
{
	int last = -1, c = 0;
	for (int j = 0; j < m; j++) {
		if (from[j] < 0)
			continue;
		if (from[j] <= last || from[j] >= n || a[from[j]] != b[j])
			return false;
		last = from[j], c++;
	}
	return c == k;
}

static void test_align(void)
{
	int32_t a[400], b[400], from[400];
	for (int i = 0; i < 300; i++)
		a[i] = rand_tok(50);
	ok(similar_align(a, 300, a, 300, SIMILAR_MAX_EDITS, from) == 300 && valid_alignment(a, 300, a, 300, from, 300),
	   "an unchanged sequence aligns whole");
	/* an insertion of 5 tokens at the start, middle and end; a deletion; a replacement */
	static const struct { const char *what; int at, del, ins; } edits[] = {
		{ "5 tokens inserted at the start", 0, 0, 5 }, { "5 inserted in the middle", 150, 0, 5 },
		{ "5 inserted at the end", 300, 0, 5 }, { "7 deleted in the middle", 120, 7, 0 },
		{ "a word replaced (3 by 4)", 200, 3, 4 },
	};
	for (size_t e = 0; e < sizeof edits / sizeof *edits; e++) {
		int m = 0;
		for (int i = 0; i < edits[e].at; i++)
			b[m++] = a[i];
		for (int i = 0; i < edits[e].ins; i++)
			b[m++] = 1000 + i; /* tokens a never has */
		for (int i = edits[e].at + edits[e].del; i < 300; i++)
			b[m++] = a[i];
		int k = similar_align(a, 300, b, m, SIMILAR_MAX_EDITS, from);
		ok(k == 300 - edits[e].del && valid_alignment(a, 300, b, m, from, k),
		   "%s: %d of %d tokens matched", edits[e].what, k, m);
	}
	/* random pairs over a small alphabet: as long as a longest common subsequence */
	bool all = true;
	for (int t = 0; t < 40 && all; t++) {
		int n = 1 + (int)tap_randf(0, 120), m = 1 + (int)tap_randf(0, 120);
		for (int i = 0; i < n; i++)
			a[i] = (int32_t)tap_randf(0, 4);
		for (int i = 0; i < m; i++)
			b[i] = (int32_t)tap_randf(0, 4);
		int k = similar_align(a, n, b, m, SIMILAR_MAX_EDITS, from);
		all = k == lcs_len(a, n, b, m) && valid_alignment(a, n, b, m, from, k);
		if (!all)
			diag("n %d m %d: %d matched, the LCS is %d", n, m, k, lcs_len(a, n, b, m));
	}
	ok(all, "40 random pairs: the alignment is a longest common subsequence");
	/* past the bound on edits: only the common ends */
	for (int i = 0; i < 300; i++)
		b[i] = i >= 10 && i < 290 ? 2000 + i : a[i];
	int k = similar_align(a, 300, b, 300, 16, from);
	ok(k == 20 && valid_alignment(a, 300, b, 300, from, k), "past the bound on edits only the ends match (%d)", k);
	ok(similar_align(a, 0, b, 10, 16, from) == 0 && from[0] == -1 && from[9] == -1, "nothing aligns with nothing");
}

static void test_sketch(void)
{
	int32_t a[300], b[300], c[300];
	uint64_t sa[SIMILAR_HASHES], sb[SIMILAR_HASHES], sc[SIMILAR_HASHES];
	int64_t ba[SIMILAR_BANDS], bb[SIMILAR_BANDS];
	for (int i = 0; i < 300; i++)
		a[i] = rand_tok(30000), c[i] = rand_tok(30000);
	memcpy(b, a, sizeof a);
	b[150] = 7, b[151] = 8; /* a word replaced */
	similar_sketch(a, 300, sa);
	similar_sketch(b, 300, sb);
	similar_sketch(c, 300, sc);
	ok(similar_estimate(sa, sa) == 1.0, "a sketch equals itself");
	double e = similar_estimate(sa, sb), u = similar_estimate(sa, sc);
	ok(e >= 0.8, "a one-word edit keeps the estimate high (%.2f; true Jaccard %.2f)", e, 292.0 / 302);
	ok(u <= 0.1, "an unrelated chunk's estimate is low (%.2f)", u);
	similar_bands(sa, ba);
	similar_bands(sb, bb);
	int shared = 0;
	for (int i = 0; i < SIMILAR_BANDS; i++)
		shared += ba[i] == bb[i];
	ok(shared >= 1, "the edited chunk shares %d of %d band keys", shared, SIMILAR_BANDS);
	similar_sketch(a, 2, sb);
	ok(similar_estimate(sa, sb) < 1, "a chunk shorter than a shingle has a sketch of its own");
}

/* A chunk's cache computed alone from position 0 into kv at slot 0. */
static void prefill(const struct model *m, const int32_t *tok, int n, struct kv_cache *kv)
{
	struct model_ws ws;
	int32_t pos[MAXTOK];
	for (int i = 0; i < n; i++)
		pos[i] = i;
	ASSERT(model_ws_init(&ws, m, 64, MAXTOK) == 0);
	kv->n = 0;
	ASSERT(model_forward_seqs(m, &ws, kv, tok, pos, &n, 1, NULL) == 0);
	model_ws_free(&ws);
}

static bool same_kv(const struct kv_cache *a, const struct kv_cache *b, int n)
{
	for (int l = 0; l < a->n_layer; l++)
		if (memcmp(kv_k(a, l, 0), kv_k(b, l, 0), (size_t)n * a->kv_dim * sizeof(float)) ||
		    memcmp(kv_v(a, l, 0), kv_v(b, l, 0), (size_t)n * a->kv_dim * sizeof(float)))
			return false;
	return memcmp(a->tok, b->tok, (size_t)n * sizeof *a->tok) == 0 &&
	       memcmp(a->pos, b->pos, (size_t)n * sizeof *a->pos) == 0;
}

static double kv_nerr(const struct kv_cache *a, const struct kv_cache *b, int n)
{
	double e = 0;
	for (int l = 0; l < a->n_layer; l++) {
		double ek = tap_nerr(kv_k(a, l, 0), kv_k(b, l, 0), (long)n * a->kv_dim);
		double ev = tap_nerr(kv_v(a, l, 0), kv_v(b, l, 0), (long)n * a->kv_dim);
		e = e > ek ? e : ek;
		e = e > ev ? e : ev;
	}
	return e;
}

static void test_rebuild(const struct model *m)
{
	const int n = 120;
	int32_t a[MAXTOK], b[MAXTOK];
	for (int i = 0; i < n; i++)
		a[i] = rand_tok(m->hp.n_vocab);
	struct kv_cache parent, got, fresh;
	ASSERT(kv_cache_init(&parent, m, MAXTOK) == 0 && kv_cache_init(&got, m, MAXTOK) == 0 &&
	       kv_cache_init(&fresh, m, MAXTOK) == 0);
	prefill(m, a, n, &parent);
	struct blend_opts o;
	blend_opts_init(&o);
	struct similar_stats st;
	ok(similar_rebuild(m, &parent, 0, n, a, n, &o, &got, 0, &st) == KB_OK && same_kv(&got, &parent, n) &&
	   st.n_reused == n, "an unchanged chunk rebuilt from its parent is the parent's cache, bit for bit");

	static const struct { const char *where; int at; } edits[] = {
		{ "start", 0 }, { "middle", 60 }, { "end", 117 },
	};
	for (size_t e = 0; e < sizeof edits / sizeof *edits; e++) {
		/* a word of 2 tokens replaced by 3 */
		int nb = 0;
		for (int i = 0; i < edits[e].at; i++)
			b[nb++] = a[i];
		for (int i = 0; i < 3; i++)
			b[nb++] = 3 + (a[edits[e].at] + 7 * (i + 1)) % (m->hp.n_vocab - 3);
		for (int i = edits[e].at + 2; i < n; i++)
			b[nb++] = a[i];
		prefill(m, b, nb, &fresh);

		o.ratio = 1.0f;
		int rc = similar_rebuild(m, &parent, 0, n, b, nb, &o, &got, 0, &st);
		ok(rc == KB_OK && same_kv(&got, &fresh, nb) && st.n_reused == 0,
		   "edit at the %s, ratio 1.0: a fresh prefill bit for bit (nerr %.1e)", edits[e].where,
		   kv_nerr(&got, &fresh, nb));

		o.ratio = 0;
		ASSERT(similar_rebuild(m, &parent, 0, n, b, nb, &o, &got, 0, &st) == KB_OK);
		double e0 = kv_nerr(&got, &fresh, nb);
		const int matched = st.n_matched;
		o.ratio = 0.15f;
		ASSERT(similar_rebuild(m, &parent, 0, n, b, nb, &o, &got, 0, &st) == KB_OK);
		double e15 = kv_nerr(&got, &fresh, nb);
		int kept = matched - (edits[e].at + 2 >= n ? 0 : 1); /* the last token is always recomputed */
		ok(matched >= n - 2 && st.blend.n_cached == kept && st.n_reused < kept && st.n_reused > kept * 3 / 4 &&
		   e15 <= e0 && got.pos[nb - 1] == nb - 1,
		   "edit at the %s: %d of %d tokens matched, %d reused at ratio 0.15; nerr %.2e (ratio 0: %.2e)",
		   edits[e].where, matched, nb, st.n_reused, e15, e0);
		o.ratio = 0.15f;
	}
	kv_cache_free(&parent);
	kv_cache_free(&got);
	kv_cache_free(&fresh);
}

/* Through the store: the parent is found by (doc, seq) and by the bands, an
 * unrelated chunk finds none; a miss with chunkcache_set_similar is built
 * from it and records it as its parent. */
static void test_store(const struct model *m, const char *dir)
{
	struct chunkcache *cc;
	ASSERT(chunkcache_open(&cc, dir, true, KVC_F32) == KB_OK);
	const int n = 100;
	int32_t a[MAXTOK], b[MAXTOK], c[MAXTOK];
	for (int i = 0; i < n; i++)
		a[i] = rand_tok(m->hp.n_vocab), c[i] = rand_tok(m->hp.n_vocab);
	memcpy(b, a, sizeof a);
	b[50] = 3 + (a[50] + 1) % (m->hp.n_vocab - 3); /* a token replaced */
	struct kv_cache kv, fresh;
	struct model_ws ws;
	ASSERT(kv_cache_init(&kv, m, MAXTOK) == 0 && kv_cache_init(&fresh, m, MAXTOK) == 0 &&
	       model_ws_init(&ws, m, 64, MAXTOK) == 0);
	char ka[STORE_KEY_HEX + 1], kb[STORE_KEY_HEX + 1], kc[STORE_KEY_HEX + 1], parent[STORE_KEY_HEX + 1];
	store_key(m->fingerprint, a, n, ka);
	store_key(m->fingerprint, b, n, kb);
	store_key(m->fingerprint, c, n, kc);
	prefill(m, a, n, &kv);
	ok(chunkcache_put_doc(cc, m, &kv, 0, n, ka, 0.1, "doc.txt", 3, NULL) == KB_OK &&
	   store_sketch_parent(chunkcache_store(cc), ka, parent) == KB_OK && parent[0] == '\0',
	   "a computed chunk is stored with its sketch and no parent");

	struct chunkcache_similar so = { .min_sim = SIMILAR_MIN_DEFAULT };
	blend_opts_init(&so.bo);
	struct similar_stats st;
	double sim = 0;
	bool by_doc = false;
	int rc = chunkcache_build_similar(cc, m, &kv, 0, b, n, kb, "doc.txt", 3, &so, &st, parent, &sim, &by_doc);
	ok(rc == KB_OK && by_doc && strcmp(parent, ka) == 0 && st.n_matched == n - 1,
	   "an edited chunk finds its older version by (doc, seq) (similarity %.2f, %d of %d matched)", sim,
	   st.n_matched, n);
	char rec[STORE_KEY_HEX + 1];
	ok(store_sketch_parent(chunkcache_store(cc), kb, rec) == KB_OK && strcmp(rec, ka) == 0,
	   "its parent is recorded in the index");
	ASSERT(store_remove(chunkcache_store(cc), kb) == KB_OK);
	ok(store_sketch_parent(chunkcache_store(cc), kb, rec) == KB_EOF, "the sketch goes with its object");
	rc = chunkcache_build_similar(cc, m, &kv, 0, b, n, kb, NULL, -1, &so, &st, parent, &sim, &by_doc);
	ok(rc == KB_OK && !by_doc && strcmp(parent, ka) == 0,
	   "without a document it is found by the sketch's bands (similarity %.2f)", sim);
	ASSERT(store_remove(chunkcache_store(cc), kb) == KB_OK);
	ok(chunkcache_build_similar(cc, m, &kv, 0, c, n, kc, "doc.txt", 4, &so, &st, parent, &sim, &by_doc) == KB_EOF,
	   "an unrelated chunk finds no candidate");
	so.min_sim = 1.0;
	ok(chunkcache_build_similar(cc, m, &kv, 0, b, n, kb, "doc.txt", 3, &so, &st, parent, &sim, &by_doc) == KB_EOF,
	   "nor does the edited one when the least similarity is 1");

	/* a miss of chunkcache_load: built from the parent at ratio 1.0, a fresh prefill */
	so.min_sim = SIMILAR_MIN_DEFAULT;
	so.bo.ratio = 1.0f;
	chunkcache_set_similar(cc, &so);
	struct chunkcache_stats cs = { 0 };
	prefill(m, b, n, &fresh);
	rc = chunkcache_load(cc, m, &ws, &kv, 0, b, n, NULL, &cs);
	ok(rc == KB_OK && cs.misses == 1 && cs.similar == 1 && cs.tokens_similar == (uint64_t)n &&
	   cs.tokens_reused == 0 && same_kv(&kv, &fresh, n),
	   "a miss is built from the similar chunk; at ratio 1.0 it is a fresh prefill bit for bit");
	ASSERT(store_remove(chunkcache_store(cc), kb) == KB_OK);
	so.bo.ratio = 0.15f;
	chunkcache_set_similar(cc, &so);
	cs = (struct chunkcache_stats){ 0 };
	rc = chunkcache_load(cc, m, &ws, &kv, 0, b, n, NULL, &cs);
	ok(rc == KB_OK && cs.similar == 1 &&
	   cs.tokens_reused > (uint64_t)n / 2, "at ratio 0.15 it reuses %llu of %d tokens",
	   (unsigned long long)cs.tokens_reused, n);
	chunkcache_set_similar(cc, NULL);
	kv_cache_free(&kv);
	kv_cache_free(&fresh);
	model_ws_free(&ws);
	chunkcache_close(cc);
}

int main(void)
{
	tap_seed();
	test_align();
	test_sketch();
	char path[4200], dir[4200];
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-similar");
	ASSERT(fd >= 0);
	close(fd);
	snprintf(dir, sizeof dir, "%s/store", tap_tmpdir());
	struct synth_spec sp = { .arch = "llama", .n_vocab = 300, .n_embd = 64, .n_layer = 3, .n_head = 4,
				 .n_kv_head = 2, .n_ff = 96, .n_ctx = MAXTOK, .seed = 7 };
	struct model *m;
	ASSERT(synth_write(path, &sp) == 0 && model_load(&m, path) == 0);
	test_rebuild(m);
	test_store(m, dir);
	model_free(m);
	return done_testing();
}
