/* store_evict.c — eviction: bringing the store under a byte budget by LRU,
 * LFU, S3-FIFO or cost (the policies are described in store.h). */
#include "store_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* "3 s", "4.5 min", "2.1 h", "3.0 d" */
static void fmt_age(char *buf, size_t cap, double s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, cap, "%.0f s", s);
	else if (s < 3600)
		snprintf(buf, cap, "%.1f min", s / 60);
	else if (s < 86400)
		snprintf(buf, cap, "%.1f h", s / 3600);
	else
		snprintf(buf, cap, "%.1f d", s / 86400);
}

/* ---- eviction ---- */

static const char *const policy_names[STORE_POLICY_COUNT] = { "lru", "lfu", "s3fifo", "cost" };

const char *store_policy_name(int policy)
{
	return policy >= 0 && policy < STORE_POLICY_COUNT ? policy_names[policy] : "?";
}

int store_policy_from_name(const char *name)
{
	for (int i = 0; i < STORE_POLICY_COUNT; i++)
		if (!strcasecmp(name, policy_names[i]))
			return i;
	return -1;
}

/* An entry while eviction decides. */
struct cand {
	struct store_entry e;
	double score;   /* STORE_COST: value kept per byte */
	bool victim;
	bool moved;     /* S3-FIFO state changed: write it back */
	char reason[96];
};

struct evict_ctx {
	struct store *st;
	const struct store_evict_opts *o;
	struct cand *c;    /* [n] every row (pinned too) */
	size_t n;
	uint64_t total;    /* bytes still there */
	double now;
	struct cand **order; /* victims in the order chosen */
	size_t n_order;
};

static void take(struct evict_ctx *x, struct cand *c)
{
	c->victim = true;
	x->total -= c->e.size;
	x->order[x->n_order++] = c;
}

static int cmp_lru(const void *a, const void *b)
{
	const struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;
	if (x->e.last_used != y->e.last_used)
		return x->e.last_used < y->e.last_used ? -1 : 1;
	if (x->e.created != y->e.created)
		return x->e.created < y->e.created ? -1 : 1;
	return strcmp(x->e.key, y->e.key);
}

static int cmp_lfu(const void *a, const void *b)
{
	const struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;
	if (x->e.hits != y->e.hits)
		return x->e.hits < y->e.hits ? -1 : 1;
	return cmp_lru(a, b);
}

static int cmp_cost(const void *a, const void *b)
{
	const struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;
	if (x->score != y->score)
		return x->score < y->score ? -1 : 1;
	return cmp_lru(a, b);
}

static int cmp_qseq(const void *a, const void *b)
{
	const struct cand *x = *(struct cand *const *)a, *y = *(struct cand *const *)b;
	if (x->e.qseq != y->e.qseq)
		return x->e.qseq < y->e.qseq ? -1 : 1;
	return strcmp(x->e.key, y->e.key);
}

/* LRU, LFU, cost: sort the unpinned entries, take from the front. */
static int evict_sorted(struct evict_ctx *x)
{
	const struct store_evict_opts *o = x->o;
	struct cand **v = kb_calloc(x->n, sizeof *v);
	if (!v)
		return KB_ERR_NOMEM;
	size_t m = 0;
	double hl = o->half_life > 0 ? o->half_life : STORE_HALF_LIFE_DEFAULT;
	/* seconds per token of the entries whose cost is known, for those whose is not */
	double cost_sum = 0, tok_sum = 0;
	for (size_t i = 0; i < x->n; i++)
		if (x->c[i].e.cost >= 0) {
			cost_sum += x->c[i].e.cost;
			tok_sum += (double)x->c[i].e.n_tokens;
		}
	double per_token = tok_sum > 0 ? cost_sum / tok_sum : 0;
	for (size_t i = 0; i < x->n; i++) {
		struct cand *c = &x->c[i];
		if (c->e.pinned)
			continue;
		double cost = c->e.cost >= 0 ? c->e.cost : per_token * (double)c->e.n_tokens;
		double age = x->now - c->e.last_used;
		c->score = cost / (double)(c->e.size ? c->e.size : 1) * exp2(-(age > 0 ? age : 0) / hl);
		v[m++] = c;
	}
	qsort(v, m, sizeof *v, o->policy == STORE_LRU ? cmp_lru : o->policy == STORE_LFU ? cmp_lfu : cmp_cost);
	for (size_t i = 0; i < m && x->total > o->max_bytes; i++) {
		struct cand *c = v[i];
		char age[32];
		fmt_age(age, sizeof age, x->now - c->e.last_used);
		if (o->policy == STORE_LRU)
			snprintf(c->reason, sizeof c->reason, "lru: last used %s ago", age);
		else if (o->policy == STORE_LFU)
			snprintf(c->reason, sizeof c->reason, "lfu: %llu hit%s, last used %s ago",
				 (unsigned long long)c->e.hits, c->e.hits == 1 ? "" : "s", age);
		else
			snprintf(c->reason, sizeof c->reason, "cost: %.3g s/MiB%s, last used %s ago",
				 (c->e.cost >= 0 ? c->e.cost : per_token * (double)c->e.n_tokens) /
					 ((double)(c->e.size ? c->e.size : 1) / 1048576.0),
				 c->e.cost >= 0 ? "" : " (estimated)", age);
		take(x, c);
	}
	free(v);
	return KB_OK;
}

/* A FIFO of entries: pop at the front (the tail of S3-FIFO's queue, oldest),
 * push at the back (its head). Capacity covers every entry's pushes. */
struct fifo {
	struct cand **q;
	size_t head, len, cap;
	uint64_t bytes;
};

static void fifo_push(struct fifo *f, struct cand *c)
{
	f->q[(f->head + f->len++) % f->cap] = c;
	f->bytes += c->e.size;
}

static struct cand *fifo_pop(struct fifo *f)
{
	struct cand *c = f->q[f->head];
	f->head = (f->head + 1) % f->cap;
	f->len--;
	f->bytes -= c->e.size;
	return c;
}

/* S3-FIFO, as store.h describes it. Victims from S become ghosts. */
static int evict_s3fifo(struct evict_ctx *x, char (**ghosts)[STORE_KEY_HEX + 1], size_t *n_ghosts)
{
	struct cand **v = kb_calloc(x->n, sizeof *v);
	struct fifo s = { kb_calloc(x->n, sizeof *s.q), 0, 0, x->n ? x->n : 1, 0 };
	struct fifo m = { kb_calloc(x->n, sizeof *m.q), 0, 0, x->n ? x->n : 1, 0 };
	*ghosts = kb_calloc(x->n, sizeof **ghosts);
	*n_ghosts = 0;
	int rc = v && s.q && m.q && *ghosts ? KB_OK : KB_ERR_NOMEM;
	if (rc)
		goto out;
	size_t nv = 0;
	int64_t seq = 0;
	for (size_t i = 0; i < x->n; i++) {
		seq = x->c[i].e.qseq > seq ? x->c[i].e.qseq : seq;
		if (!x->c[i].e.pinned)
			v[nv++] = &x->c[i];
	}
	qsort(v, nv, sizeof *v, cmp_qseq);
	for (size_t i = 0; i < nv; i++)
		fifo_push(v[i]->e.queue == STORE_QUEUE_MAIN ? &m : &s, v[i]);
	const uint64_t small_target = x->o->max_bytes / 10;
	while (x->total > x->o->max_bytes && (s.len || m.len)) {
		if (s.len && (s.bytes > small_target || !m.len)) {
			struct cand *c = fifo_pop(&s);
			if (c->e.freq >= 1) { /* reused while in S: promote, keeping its frequency */
				c->e.queue = STORE_QUEUE_MAIN;
				c->e.qseq = ++seq;
				c->moved = true;
				fifo_push(&m, c);
			} else {
				snprintf(c->reason, sizeof c->reason, "s3fifo: small queue, no hit since it came in");
				memcpy((*ghosts)[(*n_ghosts)++], c->e.key, STORE_KEY_HEX + 1);
				take(x, c);
			}
		} else {
			struct cand *c = fifo_pop(&m);
			if (c->e.freq > 0) { /* reused: once more round main */
				c->e.freq--;
				c->e.qseq = ++seq;
				c->moved = true;
				fifo_push(&m, c);
			} else {
				snprintf(c->reason, sizeof c->reason, "s3fifo: main queue, no hit since its last round");
				take(x, c);
			}
		}
	}
out:
	free(v);
	free(s.q);
	free(m.q);
	return rc;
}

/* Load every row whose key is a store key (under the write lock); *n_bad
 * counts the others, which name no object and are never used to build a path. */
static int load_cands(struct store *st, struct cand **out, size_t *n, uint64_t *n_bad)
{
	sqlite3_stmt *s;
	*out = NULL;
	*n = 0;
	size_t cap = 0;
	int rc = db_prep(&st->db, &s, "SELECT " STORE_ENTRY_COLS " FROM objects");
	if (rc)
		return rc;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		if (kb_grow(out, &cap, *n, sizeof **out, 256)) {
			rc = KB_ERR_NOMEM;
			break;
		}
		struct cand *c = &(*out)[*n];
		memset(c, 0, sizeof *c);
		store_read_entry(s, &c->e);
		if (store_key_valid((const char *)sqlite3_column_text(s, 0)))
			(*n)++;
		else
			(*n_bad)++;
	}
	if (!rc && r != SQLITE_DONE)
		rc = db_fail(&st->db, "load the index");
	sqlite3_finalize(s);
	return rc;
}

/* Under the write lock: carry out what was decided. */
static int evict_apply(struct evict_ctx *x, char (*ghosts)[STORE_KEY_HEX + 1], size_t n_ghosts)
{
	struct store *st = x->st;
	/* rows with a malformed key (planted, or damaged) go; no path is made of them */
	int rc = db_exec(&st->db, "DELETE FROM objects WHERE length(key) != 64 OR key GLOB '*[^0-9a-f]*'");
	for (size_t i = 0; i < x->n_order && !rc; i++) {
		const char *key = x->order[i]->e.key;
		char *path;
		if ((rc = store_path(st, key, &path)) ||
		    (rc = store_exec_key(st, "DELETE FROM objects WHERE key = ?1", key, NULL))) {
			free(path);
			break;
		}
		if (unlink(path) < 0 && errno != ENOENT)
			rc = kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
		free(path);
		store_hook(st, STORE_HOOK_EVICT_UNLINKED);
	}
	sqlite3_stmt *s = NULL;
	for (size_t i = 0; i < x->n && !rc; i++) {
		const struct cand *c = &x->c[i];
		if (!c->moved || c->victim)
			continue;
		if ((rc = db_prep(&st->db, &s, "UPDATE objects SET queue = ?2, freq = ?3, qseq = ?4 WHERE key = ?1")))
			break;
		sqlite3_bind_text(s, 1, c->e.key, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, c->e.queue);
		sqlite3_bind_int(s, 3, c->e.freq);
		sqlite3_bind_int64(s, 4, c->e.qseq);
		rc = db_run(&st->db, s, "update the queues");
	}
	for (size_t i = 0; i < n_ghosts && !rc; i++)
		rc = store_exec_key(st, "INSERT OR REPLACE INTO ghosts (key, seq) VALUES (?1,"
				  " (SELECT COALESCE(MAX(seq), 0) + 1 FROM ghosts))", ghosts[i], NULL);
	if (rc || !n_ghosts)
		return rc;
	/* the ghost set keeps as many keys as the main queue holds objects (at least STORE_GHOST_MIN) */
	if ((rc = db_prep(&st->db, &s, "DELETE FROM ghosts WHERE seq NOT IN (SELECT seq FROM ghosts ORDER BY seq DESC"
			       " LIMIT MAX(?1, (SELECT COUNT(*) FROM objects WHERE queue = 1)))")))
		return rc;
	sqlite3_bind_int(s, 1, STORE_GHOST_MIN);
	return db_run(&st->db, s, "trim the ghosts");
}

int store_evict(struct store *st, const struct store_evict_opts *o, store_evict_fn fn, void *ctx,
		struct store_evict_result *res)
{
	struct store_evict_result r = { 0 };
	if (o->policy < 0 || o->policy >= STORE_POLICY_COUNT)
		return kb_fail(KB_ERR_ARG, "unknown eviction policy %d", (int)o->policy);
	struct evict_ctx x = { .st = st, .o = o, .now = store_now(st) };
	char (*ghosts)[STORE_KEY_HEX + 1] = NULL;
	size_t n_ghosts = 0;
	/* a dry run reads one snapshot and changes nothing (a read-only store will do) */
	int rc = o->dry_run ? db_exec(&st->db, "BEGIN") : store_writable(st, "evict");
	if (rc || (!o->dry_run && (rc = db_begin(&st->db))))
		return rc;
	if ((rc = load_cands(st, &x.c, &x.n, &r.n_bad_rows)))
		goto out;
	for (size_t i = 0; i < x.n; i++)
		x.total += x.c[i].e.size;
	if (!(x.order = kb_calloc(x.n, sizeof *x.order))) {
		rc = KB_ERR_NOMEM;
		goto out;
	}
	if (x.total > o->max_bytes)
		rc = o->policy == STORE_S3FIFO ? evict_s3fifo(&x, &ghosts, &n_ghosts) : evict_sorted(&x);
	if (!rc && !o->dry_run)
		rc = evict_apply(&x, ghosts, n_ghosts);
out:
	if (o->dry_run || rc) {
		db_rollback(&st->db);
	} else {
		rc = db_commit(&st->db);
	}
	if (!rc) {
		for (size_t i = 0; i < x.n_order; i++) {
			const struct cand *c = x.order[i];
			r.n_removed++;
			r.bytes_removed += c->e.size;
			if (fn)
				fn(ctx, c->e.key, c->e.size, c->reason);
		}
		for (size_t i = 0; i < x.n; i++) {
			const struct cand *c = &x.c[i];
			if (c->victim)
				continue;
			r.n_left++;
			r.bytes_left += c->e.size;
			if (c->e.pinned) {
				r.n_pinned++;
				r.bytes_pinned += c->e.size;
			}
		}
		uint64_t live = 0;
		if (!o->dry_run)
			rc = store_walk_objects(st, NULL, true, &r.n_temp_removed, &live);
	}
	free(x.c);
	free(x.order);
	free(ghosts);
	if (res)
		*res = r;
	return rc;
}

