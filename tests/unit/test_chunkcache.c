/* test_chunkcache.c — chunk caches through the store, on a synthetic model
 * (no ../shared needed): a miss is computed and stored, a hit reads back the
 * same K/V; the pipelined loader gives what loading each part alone gives; a
 * stored object corrupt in a layer is found, removed, warned of and asked to be
 * retried, one corrupt in its header is recomputed at once; prompt_run goes on
 * through a corrupt object with the same logits. */
#include <stdlib.h>
#include <sys/stat.h>

#include "chunkcache.h"
#include "prompt.h"
#include "store.h"
#include "synth.h"
#include "tap.h"

#define NL 3 /* layers of the synthetic model */

static char dir[96]; /* the store */
static int n_warn, last_id;
static char last_msg[1024];

static void on_warn(void *ctx, int id, const char *msg)
{
	(void)ctx;
	n_warn++;
	last_id = id;
	snprintf(last_msg, sizeof last_msg, "%s", msg);
}

/* Largest |a - b| over slots [s0, s0 + n) of every layer's K and V. */
static double maxdiff(const struct kv_cache *a, const struct kv_cache *b, int s0, int n)
{
	double d = 0;
	for (int l = 0; l < a->n_layer; l++)
		for (size_t i = 0; i < (size_t)n * a->kv_dim; i++) {
			d = fmax(d, fabs(kv_k(a, l, s0)[i] - kv_k(b, l, s0)[i]));
			d = fmax(d, fabs(kv_v(a, l, s0)[i] - kv_v(b, l, s0)[i]));
		}
	return d;
}

/* Invert one byte of key's object at the given share of its length. */
static void corrupt(struct chunkcache *cc, const char *key, double where)
{
	char *path = store_object_path(chunkcache_store(cc), key);
	ASSERT(path);
	FILE *f = fopen(path, "r+b");
	ASSERT(f);
	struct stat sb;
	ASSERT(fstat(fileno(f), &sb) == 0);
	long off = (long)(sb.st_size * where);
	ASSERT(fseek(f, off, SEEK_SET) == 0);
	int c = fgetc(f);
	ASSERT(c != EOF && fseek(f, off, SEEK_SET) == 0);
	fputc(c ^ 0xff, f);
	ASSERT(fclose(f) == 0);
	free(path);
}

static bool stored(struct chunkcache *cc, const char *key)
{
	char *path = store_object_path(chunkcache_store(cc), key);
	struct stat sb;
	bool there = path && stat(path, &sb) == 0;
	free(path);
	return there;
}

static void test_load(const struct model *m, struct model_ws *ws)
{
	int32_t tok[3][12];
	const int n[3] = { 12, 7, 9 };
	for (int p = 0; p < 3; p++)
		for (int i = 0; i < n[p]; i++)
			tok[p][i] = 3 + (p * 31 + i * 7) % 250;
	struct kv_cache ref, kv;
	ASSERT(kv_cache_init(&ref, m, 64) == 0 && kv_cache_init(&kv, m, 64) == 0);
	struct chunkcache *none, *cc;
	ASSERT(chunkcache_open(&none, NULL, false, KVC_F32) == 0 && chunkcache_open(&cc, dir, true, KVC_F32) == 0);
	chunkcache_set_warn(cc, on_warn, NULL);

	/* the reference: each part computed alone, at its slots */
	int slot0[3], s = 0;
	for (int p = 0; p < 3; p++) {
		slot0[p] = s;
		ASSERT(chunkcache_load(none, m, ws, &ref, s, tok[p], n[p], NULL, NULL) == 0);
		s += n[p];
	}
	char key[STORE_KEY_HEX + 1];
	struct chunkcache_stats st = { 0 };
	int rc = chunkcache_load(cc, m, ws, &kv, 0, tok[0], n[0], key, &st);
	ok(rc == 0 && st.misses == 1 && st.hits == 0 && stored(cc, key), "a miss is computed and stored");
	memset(kv.k, 0, sizeof *kv.k * (size_t)NL * kv.n_ctx * kv.kv_dim);
	rc = chunkcache_load(cc, m, ws, &kv, 0, tok[0], n[0], NULL, &st);
	ok(rc == 0 && st.hits == 1 && st.bytes_read > 0 && maxdiff(&kv, &ref, 0, n[0]) == 0,
	   "a hit reads back the same K/V (f32)");

	/* pipelined: part 0 a hit, parts 1 and 2 misses, at their slots */
	struct chunkcache_part parts[3];
	for (int p = 0; p < 3; p++)
		parts[p] = (struct chunkcache_part){ .slot0 = slot0[p], .tokens = tok[p], .n = n[p], .id = 10 + p };
	struct chunkcache_loading *ld;
	bool retry = true;
	st = (struct chunkcache_stats){ 0 };
	kv.n = 0;
	rc = chunkcache_load_begin(cc, m, ws, &kv, parts, 3, &st, &ld);
	for (int l = 0; l < NL && rc == 0; l++)
		rc = chunkcache_wait_layer(ld, l);
	int rc2 = rc == 0 ? chunkcache_load_end(ld, &retry) : -1;
	ok(rc == 0 && rc2 == 0 && !retry && st.hits == 1 && st.misses == 2 && kv.n == s && maxdiff(&kv, &ref, 0, s) == 0,
	   "pipelined: every part's K/V as computed alone (1 hit, 2 misses)");

	/* a layer's payload corrupt: found while loading, removed, warned of, retry asked */
	store_key(m->fingerprint, tok[1], (size_t)n[1], key);
	corrupt(cc, key, 0.7);
	n_warn = 0;
	kv.n = 0;
	rc = chunkcache_load_begin(cc, m, ws, &kv, parts, 3, NULL, &ld);
	int rcw = 0;
	for (int l = 0; l < NL && rc == 0 && rcw == 0; l++)
		rcw = chunkcache_wait_layer(ld, l);
	rc2 = rc == 0 ? chunkcache_load_end(ld, &retry) : -1;
	ok(rc == 0 && rcw != 0 && rc2 != 0 && retry, "a corrupt layer stops the loading, and a retry is asked for");
	ok(n_warn == 1 && last_id == 11 && strstr(last_msg, "removed from the store") && !stored(cc, key),
	   "... the object is removed, the warning names the part: %s", last_msg);
	st = (struct chunkcache_stats){ 0 };
	kv.n = 0;
	rc = chunkcache_load_begin(cc, m, ws, &kv, parts, 3, &st, &ld);
	rc2 = rc == 0 ? chunkcache_load_end(ld, &retry) : -1;
	ok(rc == 0 && rc2 == 0 && !retry && st.misses == 1 && st.hits == 2 && maxdiff(&kv, &ref, 0, s) == 0,
	   "... and the retry computes it again: the same K/V");

	/* a header corrupt: recomputed at once, with a warning */
	store_key(m->fingerprint, tok[2], (size_t)n[2], key);
	corrupt(cc, key, 0.02);
	n_warn = 0;
	st = (struct chunkcache_stats){ 0 };
	kv.n = 0;
	rc = chunkcache_load_begin(cc, m, ws, &kv, parts, 3, &st, &ld);
	rc2 = rc == 0 ? chunkcache_load_end(ld, &retry) : -1;
	ok(rc == 0 && rc2 == 0 && !retry && st.misses == 1 && n_warn == 1 && last_id == 12 &&
		   maxdiff(&kv, &ref, 0, s) == 0,
	   "a corrupt header: computed instead, warned of: %s", last_msg);

	chunkcache_close(none);
	chunkcache_close(cc);
	kv_cache_free(&ref);
	kv_cache_free(&kv);
}

/* prompt_run: blend at ratio 1 is a full prefill; a corrupt stored chunk is
 * recomputed and the result is the same. */
static void test_prompt(const struct model *m, struct model_ws *ws)
{
	struct prompt p = { 0 };
	const char *chunks[] = { "the cat sat on a mat and then it ran", "a dog ate the bone", "birds sing" };
	ASSERT(prompt_begin(&p, m, "plain", "read this", "what did the cat do") == 0);
	for (int i = 0; i < 3; i++)
		ASSERT(prompt_add_text(&p, m, chunks[i], strlen(chunks[i]), 0) == 0);
	ASSERT(prompt_end(&p, m) == 0);
	ok(p.n_segs == 5 && p.n_tokens > 10 && prompt_fit(&p, p.n_tokens, 0) == 0 &&
		   prompt_fit(&p, p.n_tokens, 1) == KB_ERR_ARG && strstr(kb_error(), "more than the context"),
	   "a prompt of %d tokens in 5 segments fits %d tokens, not one fewer", p.n_tokens, p.n_tokens);
	const int V = m->hp.n_vocab;
	float *full = malloc(sizeof *full * V), *one = malloc(sizeof *one * V), *again = malloc(sizeof *again * V);
	struct kv_cache kv;
	struct chunkcache *cc;
	ASSERT(full && one && again && kv_cache_init(&kv, m, 128) == 0 && chunkcache_open(&cc, dir, true, KVC_F32) == 0);
	chunkcache_set_warn(cc, on_warn, NULL);
	struct blend_opts o;
	blend_opts_init(&o);
	struct prompt_stats st;
	o.mode = BLEND_FULL;
	ASSERT(prompt_run(&p, m, ws, &kv, cc, &o, full, &st) == 0);
	ok(st.blend.n_cached == 0 && st.blend.n_selected == p.n_tokens, "full: nothing from caches");
	o.mode = BLEND_BLEND, o.ratio = 1;
	ASSERT(prompt_run(&p, m, ws, &kv, cc, &o, one, &st) == 0);
	struct prompt_fidelity f;
	ASSERT(prompt_verify(m, ws, &kv, one, &f) == 0);
	ok(f.tok == f.tok_full && f.kl < 1e-6 && st.blend.n_cached > 0, "blend at ratio 1 is a full prefill (KL %.2g)", f.kl);

	char key[STORE_KEY_HEX + 1];
	const struct prompt_seg *g = &p.segs[2];
	store_key(m->fingerprint, g->tok, (size_t)g->n, key);
	corrupt(cc, key, 0.7);
	n_warn = 0;
	ASSERT(prompt_run(&p, m, ws, &kv, cc, &o, again, &st) == 0);
	double d = 0;
	for (int i = 0; i < V; i++)
		d = fmax(d, fabs(again[i] - one[i]));
	ok(st.n_retries == 1 && n_warn == 1 && last_id == 2 && d == 0,
	   "a corrupt stored chunk: run again with it computed, the same logits (%d retry, warning for segment %d)",
	   st.n_retries, last_id);
	chunkcache_close(cc);
	kv_cache_free(&kv);
	prompt_free(&p);
	free(full), free(one), free(again);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	char base[64], path[96];
	snprintf(base, sizeof base, "%s/kvblend-test-cc-XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
	ASSERT(mkdtemp(base));
	snprintf(path, sizeof path, "%s/m.gguf", base);
	snprintf(dir, sizeof dir, "%s/store", base);
	struct synth_spec sp = { .arch = "llama", .n_vocab = 300, .n_embd = 64, .n_layer = NL, .n_head = 4,
				 .n_kv_head = 2, .n_ff = 96, .n_ctx = 128, .seed = 5 };
	struct model *m;
	ASSERT(synth_write(path, &sp) == 0 && model_load(&m, path) == 0);
	struct model_ws ws;
	ASSERT(model_ws_init(&ws, m, 64, 128) == 0);
	test_load(m, &ws);
	test_prompt(m, &ws);
	model_ws_free(&ws);
	model_free(m);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	if (system(cmd) != 0)
		diag("could not remove %s", base);
	return done_testing();
}
