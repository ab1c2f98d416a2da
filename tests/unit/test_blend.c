/* test_blend.c — CacheBlend's invariants: ratio 1 is a full prefill, ratio 0
 * is full reuse, rotations are pure, a rotated layer-0 key equals the key
 * computed at the new position, and recomputing more gets closer to full.
 * Mode ape: with T = S = 1 one chunk is a full prefill of prefix + chunk +
 * query, several chunks are the plain attention over their caches at the
 * same positions; the fast kernel path equals the reference; bad options and
 * caches not computed after the prefix are errors. */
#include <math.h>
#include <string.h>

#include "blend.h"
#include "synth.h"
#include "util.h"
#include "tap.h"

enum { NSEG = 4, MAXTOK = 256 };

struct prompt {
	int32_t tok[MAXTOK];
	struct blend_seg seg[NSEG]; /* prefix, chunk, chunk, query */
	int n;
};

/* A prompt from token ids: prefix of np, chunks of n1 and n2, query of nq. */
static void make_prompt(struct prompt *p, const struct model *m, int np, int n1, int n2, int nq, int salt)
{
	int len[NSEG] = { np, n1, n2, nq };
	p->n = 0;
	for (int s = 0; s < NSEG; s++) {
		p->seg[s] = (struct blend_seg){ .slot0 = p->n, .n = len[s], .cached = s == 1 || s == 2 };
		for (int i = 0; i < len[s]; i++, p->n++)
			p->tok[p->n] = 3 + (p->n * 37 + salt * 11 + s) % (m->hp.n_vocab - 3);
	}
	p->tok[0] = tok_bos(m->tok) >= 0 ? tok_bos(m->tok) : p->tok[0];
}

/* Fill kv with the prompt's tokens and each cached chunk's cache computed alone
 * at positions 0..n-1 (what the store holds). */
static void load_chunks(const struct model *m, const struct prompt *p, struct kv_cache *kv)
{
	struct kv_cache one;
	struct model_ws ws;
	ASSERT(kv_cache_init(&one, m, MAXTOK) == 0 && model_ws_init(&ws, m, 64, MAXTOK) == 0);
	memcpy(kv->tok, p->tok, (size_t)p->n * sizeof *kv->tok);
	kv->n = p->n;
	for (int s = 0; s < NSEG; s++) {
		const struct blend_seg *g = &p->seg[s];
		if (!g->cached)
			continue;
		int32_t pos[MAXTOK];
		for (int i = 0; i < g->n; i++)
			pos[i] = i;
		one.n = 0;
		ASSERT(model_forward(m, &ws, &one, p->tok + g->slot0, pos, g->n, NULL, false) == 0);
		for (int l = 0; l < m->hp.n_layer; l++) {
			memcpy(kv_k(kv, l, g->slot0), kv_k(&one, l, 0), (size_t)g->n * kv->kv_dim * sizeof(float));
			memcpy(kv_v(kv, l, g->slot0), kv_v(&one, l, 0), (size_t)g->n * kv->kv_dim * sizeof(float));
		}
		memcpy(kv->pos + g->slot0, pos, (size_t)g->n * sizeof *pos);
	}
	kv_cache_free(&one);
	model_ws_free(&ws);
}

/* Blend the prompt with options o into kv; last-token logits into lg. */
static struct blend_stats run_blend(const struct model *m, const struct prompt *p, const struct blend_opts *o,
				    struct kv_cache *kv, float *lg)
{
	struct model_ws ws;
	struct blend_stats st;
	ASSERT(model_ws_init(&ws, m, 16, MAXTOK) == 0);
	load_chunks(m, p, kv);
	ASSERT(blend_prompt(m, &ws, kv, p->seg, NSEG, o, lg, &st) == 0);
	model_ws_free(&ws);
	return st;
}

static void full_prefill(const struct model *m, const struct prompt *p, struct kv_cache *kv, float *lg)
{
	struct model_ws ws;
	int32_t pos[MAXTOK];
	for (int i = 0; i < p->n; i++)
		pos[i] = i;
	ASSERT(model_ws_init(&ws, m, 64, MAXTOK) == 0);
	kv->n = 0;
	ASSERT(model_forward(m, &ws, kv, p->tok, pos, p->n, lg, false) == 0);
	model_ws_free(&ws);
}

/* KL(p_ref || p) of two logit vectors. */
static double kl(const float *ref, const float *got, int n)
{
	double mr = -1e30, mg = -1e30, zr = 0, zg = 0, k = 0;
	for (int i = 0; i < n; i++)
		mr = fmax(mr, ref[i]), mg = fmax(mg, got[i]);
	for (int i = 0; i < n; i++)
		zr += exp(ref[i] - mr), zg += exp(got[i] - mg);
	for (int i = 0; i < n; i++) {
		double pr = exp(ref[i] - mr) / zr, lpr = ref[i] - mr - log(zr), lpg = got[i] - mg - log(zg);
		k += pr * (lpr - lpg);
	}
	return k;
}

static void test_invariants(const struct model *m, const char *name)
{
	const int nv = m->hp.n_vocab, kvd = m->hp.n_kv_head * m->hp.head_dim;
	struct prompt p;
	make_prompt(&p, m, 6, 40, 33, 9, 1);
	struct kv_cache full, kv;
	float *lf = malloc(nv * sizeof *lf), *lb = malloc(nv * sizeof *lb), *lr = malloc(nv * sizeof *lr);
	ASSERT(kv_cache_init(&full, m, MAXTOK) == 0 && kv_cache_init(&kv, m, MAXTOK) == 0);
	full_prefill(m, &p, &full, lf);

	struct blend_opts o;
	blend_opts_init(&o);
	o.ratio = 1.0f;
	struct blend_stats st = run_blend(m, &p, &o, &kv, lb);
	double e = tap_nerr(lb, lf, nv), ek = 0;
	for (int l = 0; l < m->hp.n_layer; l++) {
		ek = fmax(ek, tap_nerr(kv_k(&kv, l, 0), kv_k(&full, l, 0), (long)p.n * kvd));
		ek = fmax(ek, tap_nerr(kv_v(&kv, l, 0), kv_v(&full, l, 0), (long)p.n * kvd));
	}
	ok(e < 1e-5 && ek < 1e-5 && st.n_selected == p.n,
	   "%s: ratio 1.0 equals a full prefill (logits nerr %.1e, K/V nerr %.1e)", name, e, ek);

	/* any check layer: the layers before it for every token, and at ratio 1 a full prefill */
	for (int cl = 0; cl < m->hp.n_layer; cl++) {
		o.check_layer = cl;
		st = run_blend(m, &p, &o, &kv, lb);
		e = tap_nerr(lb, lf, nv);
		ok(e < 1e-5 && st.n_full_layers == cl && st.n_selected == p.n,
		   "%s: check layer %d: %d layers for every token, ratio 1.0 equals a full prefill (nerr %.1e)", name,
		   cl, st.n_full_layers, e);
	}
	o.check_layer = 1;

	o.ratio = 0;
	run_blend(m, &p, &o, &kv, lb);
	o.mode = BLEND_REUSE;
	o.ratio = 0.15f;
	st = run_blend(m, &p, &o, &kv, lr);
	ok(memcmp(lb, lr, nv * sizeof *lb) == 0 && st.n_selected == p.seg[0].n + p.seg[3].n,
	   "%s: ratio 0 equals mode reuse (only the %d uncached tokens recomputed)", name, st.n_selected);

	o.mode = BLEND_FULL;
	run_blend(m, &p, &o, &kv, lb);
	ok(tap_nerr(lb, lf, nv) < 1e-5, "%s: mode full is a full prefill", name);

	/* a chunk's cache at 0 rotated to p equals the cache computed at p */
	load_chunks(m, &p, &kv);
	const struct blend_seg *g = &p.seg[2];
	int32_t delta[MAXTOK];
	for (int i = 0; i < g->n; i++)
		delta[i] = g->slot0;
	float *saved = malloc((size_t)g->n * kvd * m->hp.n_layer * sizeof *saved);
	for (int l = 0; l < m->hp.n_layer; l++)
		memcpy(saved + (size_t)l * g->n * kvd, kv_k(&kv, l, g->slot0), (size_t)g->n * kvd * sizeof *saved);
	blend_rotate(m, &kv, g->slot0, g->n, delta);
	struct kv_cache at;
	struct model_ws ws;
	int32_t pos[MAXTOK];
	for (int i = 0; i < g->n; i++)
		pos[i] = g->slot0 + i;
	ASSERT(kv_cache_init(&at, m, MAXTOK) == 0 && model_ws_init(&ws, m, 64, MAXTOK) == 0);
	ASSERT(model_forward(m, &ws, &at, p.tok + g->slot0, pos, g->n, NULL, false) == 0);
	/* attention sees relative positions only, so computed alone at p, every layer's
	 * K is the one computed at 0 turned by p, with each layer's own rotation */
	e = 0;
	for (int l = 0; l < m->hp.n_layer; l++)
		e = fmax(e, tap_nerr(kv_k(&kv, l, g->slot0), kv_k(&at, l, 0), (long)g->n * kvd));
	ok(e < 1e-5, "%s: a chunk cached at 0 and rotated to %d equals every layer's K computed there (nerr %.1e)",
	   name, g->slot0, e);
	/* +d then -d is the identity */
	for (int i = 0; i < g->n; i++)
		delta[i] = -g->slot0;
	blend_rotate(m, &kv, g->slot0, g->n, delta);
	double worst = 0;
	for (int l = 0; l < m->hp.n_layer; l++)
		worst = fmax(worst, tap_nerr(kv_k(&kv, l, g->slot0), saved + (size_t)l * g->n * kvd, (long)g->n * kvd));
	ok(worst < 1e-5, "%s: rotating by +%d then -%d is the identity (nerr %.1e)", name, g->slot0, g->slot0, worst);
	free(saved);
	kv_cache_free(&at);
	model_ws_free(&ws);

	/* errors */
	o.mode = BLEND_BLEND;
	o.ratio = 1.5f;
	ASSERT(model_ws_init(&ws, m, 16, MAXTOK) == 0);
	load_chunks(m, &p, &kv);
	ok(blend_prompt(m, &ws, &kv, p.seg, NSEG, &o, lb, NULL) == KB_ERR_ARG && strstr(kb_error(), "ratio"),
	   "%s: a ratio above 1 is refused: %s", name, kb_error());
	model_ws_free(&ws);

	kv_cache_free(&full);
	kv_cache_free(&kv);
	free(lf), free(lb), free(lr);
}

/* Fidelity to a full prefill (KL of the last-token distribution) as the
 * recompute ratio rises: ratio 1 is exact, blending beats plain reuse. */
static void test_fidelity(const struct model *m, const char *name)
{
	const int nv = m->hp.n_vocab;
	float *lf = malloc(nv * sizeof *lf), *lb = malloc(nv * sizeof *lb);
	struct kv_cache kv;
	ASSERT(kv_cache_init(&kv, m, MAXTOK) == 0);
	const float ratios[] = { 0, 0.15f, 0.3f, 0.5f, 1 };
	double sum[5] = { 0 };
	enum { TRIALS = 8 };
	for (int t = 0; t < TRIALS; t++) {
		struct prompt p;
		make_prompt(&p, m, 5, 30 + t, 25 + 2 * t, 6, t + 3);
		full_prefill(m, &p, &kv, lf);
		for (int r = 0; r < 5; r++) {
			struct blend_opts o;
			blend_opts_init(&o);
			o.ratio = ratios[r];
			run_blend(m, &p, &o, &kv, lb);
			sum[r] += kl(lf, lb, nv) / TRIALS;
		}
	}
	diag("%s: mean KL to full prefill at ratio 0 / 0.15 / 0.3 / 0.5 / 1: %.4f %.4f %.4f %.4f %.2g", name,
	     sum[0], sum[1], sum[2], sum[3], sum[4]);
	ok(sum[1] <= sum[0] && sum[3] <= sum[1] && sum[4] < 1e-6,
	   "%s: fidelity rises with the ratio (KL %.4f at 0, %.4f at 0.15, %.4f at 0.5, ~0 at 1)", name, sum[0],
	   sum[1], sum[3]);
	kv_cache_free(&kv);
	free(lf), free(lb);
}

/* ---- mode ape ---- */

/* kv: the prompt's head (prefix) computed at 0..P-1 and each cached chunk's
 * cache computed after it (the run prefix + chunk from position 0, the
 * chunk's rows kept: positions P..P+n-1), as the store's APE caches hold them.
 * The head is marked cached (its K/V are the prefix's own). */
static void load_ape(const struct model *m, struct prompt *p, struct kv_cache *kv)
{
	struct kv_cache one;
	struct model_ws ws;
	ASSERT(kv_cache_init(&one, m, MAXTOK) == 0 && model_ws_init(&ws, m, 64, MAXTOK) == 0);
	memcpy(kv->tok, p->tok, (size_t)p->n * sizeof *kv->tok);
	kv->n = p->n;
	const int P = p->seg[0].n;
	p->seg[0].cached = true;
	for (int s = 0; s < NSEG; s++) {
		const struct blend_seg *g = &p->seg[s];
		if (!g->cached)
			continue;
		const int lead = s > 0 ? P : 0;
		int32_t run[MAXTOK], pos[MAXTOK];
		memcpy(run, p->tok, (size_t)lead * sizeof *run);
		memcpy(run + lead, p->tok + g->slot0, (size_t)g->n * sizeof *run);
		for (int i = 0; i < lead + g->n; i++)
			pos[i] = i;
		one.n = 0;
		ASSERT(model_forward(m, &ws, &one, run, pos, lead + g->n, NULL, false) == 0);
		for (int l = 0; l < m->hp.n_layer; l++) {
			memcpy(kv_k(kv, l, g->slot0), kv_k(&one, l, lead), (size_t)g->n * kv->kv_dim * sizeof(float));
			memcpy(kv_v(kv, l, g->slot0), kv_v(&one, l, lead), (size_t)g->n * kv->kv_dim * sizeof(float));
		}
		memcpy(kv->pos + g->slot0, pos + lead, (size_t)g->n * sizeof *pos);
	}
	kv_cache_free(&one);
	model_ws_free(&ws);
}

static int run_ape(const struct model *m, struct prompt *p, float t, float sc, struct kv_cache *kv, float *lg,
		   struct blend_stats *st)
{
	struct model_ws ws;
	struct blend_opts o;
	blend_opts_init(&o);
	o.mode = BLEND_APE;
	o.ape_temp = t, o.ape_scale = sc;
	ASSERT(model_ws_init(&ws, m, 16, MAXTOK) == 0);
	load_ape(m, p, kv);
	int rc = blend_prompt(m, &ws, kv, p->seg, NSEG, &o, lg, st);
	ok(ws.ape == NULL, "ape: the workspace's attention is ordinary again after the blend");
	model_ws_free(&ws);
	return rc;
}

static void test_ape(const struct model *m, const char *name)
{
	const int nv = m->hp.n_vocab;
	float *lf = malloc(nv * sizeof *lf), *la = malloc(nv * sizeof *la), *lr = malloc(nv * sizeof *lr);
	struct kv_cache full, kv, ref;
	ASSERT(kv_cache_init(&full, m, MAXTOK) == 0 && kv_cache_init(&kv, m, MAXTOK) == 0 &&
	       kv_cache_init(&ref, m, MAXTOK) == 0);
	struct blend_stats st;

	/* one chunk, T = S = 1: a full prefill of prefix + chunk + query */
	struct prompt p;
	make_prompt(&p, m, 6, 40, 0, 9, 5);
	p.seg[2].cached = false;
	full_prefill(m, &p, &full, lf);
	ok(run_ape(m, &p, 1, 1, &kv, la, &st) == KB_OK, "%s: ape, one chunk, T = S = 1 runs", name);
	double e = tap_nerr(la, lf, nv);
	ok(e < 1e-5 && st.n_selected == 9 && st.next_pos == p.n && st.ape.ctx0 == 6 && st.ape.ctx1 == 46,
	   "%s: ape, one chunk, T = S = 1 equals a full prefill (logits nerr %.1e; %d rows run, next position %d)",
	   name, e, st.n_selected, st.next_pos);

	/* several chunks, T = S = 1: the plain attention of the query over the
	 * caches where they are (every chunk from position P), run here with
	 * model_forward and no APE at all */
	make_prompt(&p, m, 6, 40, 33, 9, 7);
	ok(run_ape(m, &p, 1, 1, &kv, la, &st) == KB_OK, "%s: ape, two chunks, T = S = 1 runs", name);
	{
		struct model_ws ws;
		ASSERT(model_ws_init(&ws, m, 16, MAXTOK) == 0);
		load_ape(m, &p, &ref);
		ref.n = p.seg[3].slot0;
		int32_t pos[MAXTOK];
		for (int i = 0; i < p.seg[3].n; i++)
			pos[i] = 6 + 40 + i; /* after the longest chunk */
		ASSERT(model_forward(m, &ws, &ref, p.tok + p.seg[3].slot0, pos, p.seg[3].n, lr, false) == 0);
		model_ws_free(&ws);
	}
	e = tap_nerr(la, lr, nv);
	int pos_ok = kv.pos[p.seg[1].slot0] == 6 && kv.pos[p.seg[2].slot0] == 6 && kv.pos[p.n - 1] == 6 + 40 + 8;
	ok(e < 1e-5 && pos_ok && st.next_pos == 6 + 40 + 9,
	   "%s: ape, two chunks, T = S = 1 equals attention over the caches at the same positions (nerr %.1e)", name, e);
	full_prefill(m, &p, &full, lf);
	diag("%s: ape, two chunks, KL to a full prefill: %.4f at T = S = 1", name, kl(lf, la, nv));

	/* T = S = 0.9: the correction changes the answer; the fast kernels agree with the reference */
	ok(run_ape(m, &p, 0.9f, 0.9f, &kv, la, &st) == KB_OK, "%s: ape at T = S = 0.9 runs", name);
	double moved = tap_nerr(la, lr, nv);
	char isa[16];
	snprintf(isa, sizeof isa, "%s", kern_isa());
	ASSERT(kern_set_isa("ref") == 0);
	ok(run_ape(m, &p, 0.9f, 0.9f, &kv, lr, &st) == KB_OK, "%s: ape at T = S = 0.9 runs on the reference kernels",
	   name);
	ASSERT(kern_set_isa(isa) == 0);
	e = tap_nerr(la, lr, nv);
	ok(moved > 1e-4 && e < 1e-4, "%s: ape at T = S = 0.9 moves the logits (nerr %.1e to T = S = 1), %s equals the "
	   "reference kernels (nerr %.1e)", name, moved, isa, e);
	diag("%s: ape, two chunks, KL to a full prefill: %.4f at T = S = 0.9", name, kl(lf, la, nv));

	/* errors: options out of range, a chunk cache computed alone (from position 0) */
	ok(run_ape(m, &p, 0, 0.9f, &kv, la, &st) == KB_ERR_ARG && strstr(kb_error(), "APE temperature 0"),
	   "%s: ape: temperature 0 is an error (%s)", name, kb_error());
	ok(run_ape(m, &p, 0.9f, 11, &kv, la, &st) == KB_ERR_ARG && strstr(kb_error(), "APE scale 11"),
	   "%s: ape: scale 11 is an error (%s)", name, kb_error());
	{
		struct model_ws ws;
		struct blend_opts o;
		blend_opts_init(&o);
		o.mode = BLEND_APE;
		ASSERT(model_ws_init(&ws, m, 16, MAXTOK) == 0);
		p.seg[0].cached = false;
		load_chunks(m, &p, &kv); /* chunks computed alone, from position 0 */
		ok(blend_prompt(m, &ws, &kv, p.seg, NSEG, &o, la, &st) == KB_ERR_ARG &&
		   strstr(kb_error(), "not computed after the 6-token prefix"),
		   "%s: ape: a chunk cache computed alone is refused (%s)", name, kb_error());
		model_ws_free(&ws);
	}
	kv_cache_free(&full), kv_cache_free(&kv), kv_cache_free(&ref);
	free(lf), free(la), free(lr);
}

int main(void)
{
	tap_seed();
	char path[4200];
	int fd = tap_mkstemp(path, sizeof path, "kvblend-test-blend");
	ASSERT(fd >= 0);
	close(fd);
	struct synth_spec sp = { .arch = "qwen2", .n_vocab = 300, .n_embd = 64, .n_layer = 4, .n_head = 4,
				 .n_kv_head = 2, .n_ff = 96, .n_ctx = 256, .rope_base = 1e6f, .qkv_bias = true,
				 .tied = true, .seed = 11 };
	struct model *m;
	ASSERT(synth_write(path, &sp) == 0 && model_load(&m, path) == 0);
	test_invariants(m, "qwen2 synthetic");
	test_ape(m, "qwen2 synthetic");
	model_free(m);

	/* the newer architectures: sliding windows (8 tokens, shorter than the
	 * chunks), a rotation per kind of layer, per-head norms, fused matrices */
	static const char *const shapes[] = { "tiny-qwen3", "tiny-llama3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3" };
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
		struct synth_spec ts;
		ASSERT(synth_shape(shapes[i], &ts) == 0);
		ts.seed = 5;
		ASSERT(synth_write(path, &ts) == 0 && model_load(&m, path) == 0);
		test_invariants(m, shapes[i]);
		if (m->hp.n_swa == 0 && m->hp.attn_scale == 0) {
			test_ape(m, shapes[i]);
		} else { /* APE's kernel has no window, soft-cap or scale: refused, not wrong */
			struct prompt p;
			struct kv_cache kv;
			float *lg = malloc((size_t)m->hp.n_vocab * sizeof *lg);
			make_prompt(&p, m, 6, 20, 17, 5, 2);
			ASSERT(lg && kv_cache_init(&kv, m, MAXTOK) == 0);
			struct blend_stats bs;
			int rc = run_ape(m, &p, 0.9f, 0.9f, &kv, lg, &bs);
			ok(rc == KB_ERR_UNSUPPORTED && strstr(kb_error(), "mode ape does not run"),
			   "%s: mode ape is refused: %s", shapes[i], kb_error());
			kv_cache_free(&kv);
			free(lg);
		}
		model_free(m);
	}
	unlink(path);

	const char *stories = tap_shared("models/stories260Ktok512.gguf");
	if (stories && model_load(&m, stories) == 0) {
		test_invariants(m, "stories260K");
		test_fidelity(m, "stories260K");
		test_ape(m, "stories260K");
		model_free(m);
	} else {
		ok(1, "# SKIP stories260K is absent");
	}
	return done_testing();
}
