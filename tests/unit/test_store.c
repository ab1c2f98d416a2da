/* test_store.c — the cache store (common/store.h).
 *
 * Keys; opening (schema, a newer schema refused, not a database); put/get
 * round trips with real .kvc objects; duplicate puts; puts under the wrong key;
 * rows without files and files without rows never served; four processes
 * putting overlapping keys into a fresh store at once; processes killed in the
 * middle of a put, between the rename and the index row, and in the middle of
 * an eviction, then store_verify bringing the store back; corruption found and
 * removed by verify; each eviction policy under a budget, with pins, in the
 * order it promises (on a controlled clock), dry runs; statistics.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <sys/resource.h>
#include <time.h>

#include "hash.h"
#include "kvc.h"
#include "store.h"
#include "tap.h"

static char root[256]; /* scratch folder, removed at the end */
static int n_dirs;

static const uint8_t FP_A[32] = { 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab };
static const uint8_t FP_B[32] = { 0xb1, 0xb2, 0xb3, 0xb4 };

static const char *new_dir(void)
{
	static char d[300];
	snprintf(d, sizeof d, "%s/s%d", root, n_dirs++);
	return d;
}

/* ---- test objects: small .kvc caches ---- */

/* The tokens of object id: its length (3..34 tokens) and ids depend on id. */
static int tokens_of(int id, int32_t *t)
{
	int n = 3 + (id * 7) % 32;
	for (int i = 0; i < n; i++)
		t[i] = id * 1000 + i * 13;
	return n;
}

static void key_of(const uint8_t *fp, int id, char key[65])
{
	int32_t t[64];
	int n = tokens_of(id, t);
	store_key(fp, t, (size_t)n, key);
}

static int cache_dtype = KVC_F32; /* the dtype write_cache writes (f16: the same key, another size) */

/* Write object id's cache (2 layers, kv_dim 8, cache_dtype) to fd. */
static int write_cache(int fd, const uint8_t *fp, int id)
{
	int32_t t[64], pos[64];
	int n = tokens_of(id, t);
	float k[64 * 8], v[64 * 8];
	for (int i = 0; i < n; i++)
		pos[i] = i;
	struct kvc_header h;
	kvc_header_init(&h);
	memcpy(h.model_fp, fp, 32);
	h.n_layer = 2;
	h.n_kv_head = 2;
	h.head_dim = 4;
	h.dtype = cache_dtype;
	h.n_rot = 4;
	h.n_tokens = n;
	h.tokens = t;
	h.pos = pos;
	h.tool = "test_store";
	struct kvc_writer *w;
	int rc = kvc_writer_init(&w, fd, &h);
	for (int l = 0; l < 2 && !rc; l++) {
		for (int i = 0; i < n * 8; i++) {
			k[i] = (float)(id + l) + (float)i * 0.25f;
			v[i] = -(float)(id + l) - (float)i * 0.5f;
		}
		rc = kvc_writer_layer(w, l, k, v, 8);
	}
	if (!rc)
		rc = kvc_writer_finish(w);
	kvc_writer_free(w);
	return rc;
}

/* Put object id (model fp) with a cost; KB_OK or the error. *existed if given. */
static int put_fp(struct store *st, const uint8_t *fp, int id, double cost, bool *existed)
{
	char key[65];
	struct store_put p;
	key_of(fp, id, key);
	int rc = store_put_begin(st, key, &p);
	if (rc)
		return rc;
	if ((rc = write_cache(p.fd, fp, id))) {
		store_put_abort(st, &p);
		return rc;
	}
	struct store_meta m = { .n_tokens = tokens_of(id, (int32_t[64]){ 0 }), .cost = cost, .tool = "test" };
	memcpy(m.model_fp, fp, 32);
	rc = store_put_commit(st, &p, &m);
	if (existed)
		*existed = p.existed;
	return rc;
}

static int put(struct store *st, int id, double cost)
{
	return put_fp(st, FP_A, id, cost, NULL);
}

/* The key of object id (model A), in a static buffer. */
static const char *v_key(int id)
{
	static char key[65];
	key_of(FP_A, id, key);
	return key;
}

static int has_id(struct store *st, int id)
{
	char key[65];
	key_of(FP_A, id, key);
	return store_has(st, key, NULL);
}

static char *obj_path(struct store *st, int id)
{
	char key[65];
	key_of(FP_A, id, key);
	char *p = store_object_path(st, key);
	if (!p)
		abort();
	return p;
}

/* Files under dir/objects: *n_obj objects (.kvc), *n_tmp temporary, their bytes. */
static void count_files(const char *dir, int *n_obj, int *n_tmp, uint64_t *bytes)
{
	char p[600];
	*n_obj = *n_tmp = 0;
	if (bytes)
		*bytes = 0;
	snprintf(p, sizeof p, "%s/objects", dir);
	DIR *d = opendir(p);
	struct dirent *e, *f;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/objects/%s", dir, e->d_name);
		DIR *d2 = opendir(p);
		while (d2 && (f = readdir(d2))) {
			if (!strncmp(f->d_name, ".tmp-", 5)) {
				(*n_tmp)++;
			} else if (strstr(f->d_name, ".kvc")) {
				(*n_obj)++;
				struct stat sb;
				char q[900];
				snprintf(q, sizeof q, "%s/%s", p, f->d_name);
				if (bytes && stat(q, &sb) == 0)
					*bytes += (uint64_t)sb.st_size;
			}
		}
		if (d2)
			closedir(d2);
	}
	if (d)
		closedir(d);
}

static uint64_t problems(struct store *st, bool repair, struct store_verify_result *out)
{
	struct store_verify_result r;
	if (store_verify(st, repair, NULL, NULL, &r)) {
		diag("verify: %s", kb_error());
		return 999;
	}
	if (out)
		*out = r;
	return store_verify_problems(&r);
}

static int sql_exec(const char *dir, const char *sql)
{
	char p[400];
	sqlite3 *db;
	snprintf(p, sizeof p, "%s/index.db", dir);
	if (sqlite3_open(p, &db) != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(db, 10000);
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
	sqlite3_close(db);
	return rc;
}

static void flip_byte(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	unsigned char c;
	if (fd < 0 || pread(fd, &c, 1, off) != 1)
		abort();
	c ^= 0x10;
	if (pwrite(fd, &c, 1, off) != 1)
		abort();
	close(fd);
}


static int count_rows(const char *dir, const char *where);

/* An index of version 1 (no dtype column, no settings) opens as version 3:
 * its rows' dtype unknown until verify reads them; the default dtype is set,
 * read back, cleared. */
static void test_upgrade(void)
{
	const char *dir = new_dir();
	struct store *st;
	ASSERT(store_open(&st, dir) == KB_OK && put(st, 1, 1.0) == KB_OK);
	store_close(st);
	ASSERT(sql_exec(dir, "ALTER TABLE objects DROP COLUMN dtype; DROP TABLE settings; PRAGMA user_version = 1") == 0);
	ok(store_open(&st, dir) == KB_OK, "an index of version 1 opens (%s)", kb_error());
	struct store_entry e;
	ASSERT(store_entry_get(st, v_key(1), &e) == KB_OK);
	ok(count_rows(dir, "1") == 1 && e.dtype[0] == '\0', "its object is kept, its dtype unknown ('%s')", e.dtype);
	struct store_verify_result vr;
	ok(store_verify(st, true, NULL, NULL, &vr) == KB_OK && store_entry_get(st, v_key(1), &e) == KB_OK &&
	   strcmp(e.dtype, "f32") == 0, "verify fills in its dtype (%s)", e.dtype);
	int dt = 0;
	ok(store_default_dtype(st, &dt) == KB_OK && dt == -1, "no default dtype at first");
	ok(store_set_default_dtype(st, KVC_KV4) == KB_OK && store_default_dtype(st, &dt) == KB_OK && dt == KVC_KV4,
	   "the default dtype set to kv4 reads back");
	ok(store_set_default_dtype(st, -1) == KB_OK && store_default_dtype(st, &dt) == KB_OK && dt == -1,
	   "and cleared");
	store_close(st);
	/* version 2 (no sketches) opens as version 3: objects kept, sketches recordable */
	ASSERT(sql_exec(dir, "DROP TRIGGER objects_sketch_gone; DROP TABLE sketches; DROP TABLE bands;"
			" PRAGMA user_version = 2") == 0);
	ok(store_open(&st, dir) == KB_OK, "an index of version 2 opens (%s)", kb_error());
	uint64_t sk[2] = { 1, 2 };
	int64_t band = 3;
	char parent[STORE_KEY_HEX + 1];
	ok(count_rows(dir, "1") == 1 && store_sketch_put(st, v_key(1), "d", 0, NULL, sk, 2, &band, 1) == KB_OK &&
	   store_sketch_parent(st, v_key(1), parent) == KB_OK && parent[0] == '\0',
	   "its object is kept and a sketch can be recorded for it");
	store_close(st);
	ASSERT(sql_exec(dir, "PRAGMA user_version = 4") == 0);
	ok(store_open(&st, dir) == KB_ERR_UNSUPPORTED, "an index newer than this kvblend is refused: %s", kb_error());
}

/* ---- keys, opening ---- */

/* store_put_replace (evict --recompress): the same cache in another dtype takes
 * the object's place with its row's size, hits kept; an object gone meanwhile
 * is KB_EOF and leaves nothing; a cache of another key is refused, the
 * object intact. */
static void test_replace(void)
{
	struct store *st;
	ASSERT(store_open(&st, new_dir()) == KB_OK);
	ASSERT(put(st, 1, 2.0) == KB_OK && put(st, 2, 2.0) == KB_OK);
	char *path;
	ASSERT(store_get(st, v_key(1), &path) == KB_OK); /* a hit */
	free(path);
	struct store_entry e0, e1;
	ASSERT(store_entry_get(st, v_key(1), &e0) == KB_OK);
	struct store_put p;
	cache_dtype = KVC_KV4;
	ASSERT(store_put_begin(st, v_key(1), &p) == KB_OK && write_cache(p.fd, FP_A, 1) == KB_OK);
	ok(store_put_replace(st, &p) == KB_OK, "replace: the same cache in kv4 (%s)", kb_error());
	ASSERT(store_entry_get(st, v_key(1), &e1) == KB_OK);
	struct stat sb;
	char *op = obj_path(st, 1);
	ok(stat(op, &sb) == 0 && (uint64_t)sb.st_size == e1.size && e1.size < e0.size && e1.hits == e0.hits &&
	   e1.cost == e0.cost, "the row's size follows the file (%llu -> %llu bytes); hits and cost stay",
	   (unsigned long long)e0.size, (unsigned long long)e1.size);
	struct kvc_reader *r;
	const struct kvc_header *h;
	ASSERT(kvc_reader_open_file(&r, op) == KB_OK);
	ok(kvc_reader_next_header(r, &h) == KB_OK && h->dtype == KVC_KV4 && strcmp(e1.dtype, "kv4") == 0 &&
	   strcmp(e0.dtype, "f32") == 0, "the object is kv4 now, and its row says so (was %s)", e0.dtype);
	kvc_reader_free(r);
	/* another key's cache in its place: refused, the object as it was */
	ASSERT(store_put_begin(st, v_key(1), &p) == KB_OK && write_cache(p.fd, FP_A, 2) == KB_OK);
	ok(store_put_replace(st, &p) == KB_ERR_MISMATCH && stat(op, &sb) == 0 && (uint64_t)sb.st_size == e1.size,
	   "a cache of another key is refused, the object intact: %s", kb_error());
	/* gone meanwhile */
	ASSERT(store_put_begin(st, v_key(2), &p) == KB_OK && write_cache(p.fd, FP_A, 2) == KB_OK);
	ASSERT(store_remove(st, v_key(2)) == KB_OK);
	char *op2 = obj_path(st, 2);
	ok(store_put_replace(st, &p) == KB_EOF && stat(op2, &sb) < 0, "an object evicted meanwhile: KB_EOF, no file left");
	int n_obj, n_tmp;
	uint64_t bytes;
	count_files(store_dir(st), &n_obj, &n_tmp, &bytes);
	ok(n_obj == 1 && n_tmp == 0, "no temporary file left (%d objects, %d temporary)", n_obj, n_tmp);
	cache_dtype = KVC_F32;
	free(op), free(op2);
	store_close(st);
}

static void test_keys(void)
{
	char k1[65], k2[65], k3[65], want[65];
	int32_t t[3] = { 0x01020304, -1, 7 };
	uint8_t buf[32 + 12];
	memcpy(buf, FP_A, 32);
	const uint8_t le[12] = { 4, 3, 2, 1, 0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0 };
	memcpy(buf + 32, le, 12);
	uint8_t d[32];
	sha256(buf, sizeof buf, d);
	hash_hex(d, 32, want);
	store_key(FP_A, t, 3, k1);
	ok(strcmp(k1, want) == 0, "key = SHA-256(model fp || token ids as int32 LE)");
	store_key(FP_B, t, 3, k2);
	store_key(FP_A, t, 2, k3);
	ok(strcmp(k1, k2) && strcmp(k1, k3), "another model or another token run: another key");
	ok(store_key_valid(k1) && strlen(k1) == 64, "a key is 64 lower-case hex digits");
	int32_t many[300];
	for (int i = 0; i < 300; i++)
		many[i] = i * 31;
	uint8_t big[32 + 1200];
	memcpy(big, FP_B, 32);
	for (int i = 0; i < 300; i++)
		for (int b = 0; b < 4; b++)
			big[32 + 4 * i + b] = (uint8_t)((uint32_t)many[i] >> (8 * b));
	sha256(big, sizeof big, d);
	hash_hex(d, 32, want);
	store_key(FP_B, many, 300, k2);
	ok(strcmp(k2, want) == 0, "a long token run hashes the same as its bytes");
	k1[3] = 'A';
	ok(!store_key_valid(k1) && !store_key_valid("abc") && !store_key_valid(NULL), "upper case, short, NULL: not keys");
}

static void test_open(void)
{
	const char *dir = new_dir();
	char p[400];
	struct store *st;
	int rc = store_open(&st, dir);
	ok(rc == KB_OK, "store_open creates a store in a new folder: %s", rc ? kb_error() : "");
	if (rc)
		return;
	snprintf(p, sizeof p, "%s/objects", dir);
	struct stat sb;
	ok(stat(p, &sb) == 0 && S_ISDIR(sb.st_mode), "it made objects/");
	ok(strcmp(store_dir(st), dir) == 0, "store_dir");
	struct store_stats s;
	ok(store_stats(st, &s) == KB_OK && s.entries == 0 && s.bytes == 0, "a new store is empty");
	store_close(st);
	ok(store_open(&st, dir) == KB_OK, "and opens again");
	store_close(st);

	ok(sql_exec(dir, "PRAGMA user_version = 99") == 0, "(index version set to 99)");
	rc = store_open(&st, dir);
	ok(rc == KB_ERR_UNSUPPORTED && strstr(kb_error(), "version 99"), "a newer index is refused: %s", kb_error());

	dir = new_dir();
	mkdir(dir, 0777);
	snprintf(p, sizeof p, "%s/index.db", dir);
	FILE *f = fopen(p, "w");
	fputs("this is not a database, but it is long enough to look like a header, really it is\n", f);
	fclose(f);
	rc = store_open(&st, dir);
	ok(rc == KB_ERR_FORMAT, "index.db that is not SQLite: KB_ERR_FORMAT (%s)", kb_error());

	char *d = NULL;
	setenv("KVBLEND_STORE", "/x/st", 1);
	ok(store_default_dir(&d) == KB_OK && !strcmp(d, "/x/st"), "default: $KVBLEND_STORE");
	free(d);
	setenv("KVBLEND_STORE", "", 1);
	setenv("XDG_CACHE_HOME", "/x/cache", 1);
	ok(store_default_dir(&d) == KB_OK && !strcmp(d, "/x/cache/kvblend"), "else $XDG_CACHE_HOME/kvblend");
	free(d);
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", "/x/home", 1);
	ok(store_default_dir(&d) == KB_OK && !strcmp(d, "/x/home/.cache/kvblend"), "else ~/.cache/kvblend");
	free(d);
	unsetenv("HOME");
	ok(store_default_dir(&d) == KB_ERR_ARG, "none set: an error that says so");
	unsetenv("KVBLEND_STORE");
}

/* ---- puts and gets ---- */

static void test_round_trip(void)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir)) {
		ok(0, "open: %s", kb_error());
		return;
	}
	store_set_clock(st, 1e9);
	char key[65], *path = NULL;
	key_of(FP_A, 1, key);
	ok(store_get(st, key, &path) == KB_EOF, "an empty store: a miss");
	int rc = put(st, 1, 0.5);
	ok(rc == KB_OK, "put: %s", rc ? kb_error() : "");
	ok(store_has(st, key, NULL) == KB_OK, "store_has finds it");
	struct store_entry e;
	ok(store_entry_get(st, key, &e) == KB_OK && e.hits == 0 && e.n_tokens == 10 && e.cost == 0.5 &&
		   e.created == 1e9 && e.last_used == 1e9 && !e.pinned && e.queue == STORE_QUEUE_SMALL &&
		   !strcmp(e.tool, "test"),
	   "its row: no hit, 10 tokens, cost, created, tool, small queue");
	store_set_clock(st, 1e9 + 60);
	rc = store_get(st, key, &path);
	ok(rc == KB_OK && path, "store_get: a hit");
	char *want = store_object_path(st, key);
	ok(path && want && !strcmp(path, want) && strstr(path, "/objects/") && strstr(path, ".kvc"),
	   "the path is objects/ab/cdef….kvc");
	ok(path && strncmp(path + strlen(dir) + 9, key, 2) == 0 && !strncmp(path + strlen(dir) + 12, key + 2, 62),
	   "named by its key");
	free(want);
	/* the object reads back as written */
	struct kvc_reader *r;
	const struct kvc_header *h;
	bool same = path && kvc_reader_open_file(&r, path) == KB_OK;
	if (same) {
		int32_t t[64];
		int n = tokens_of(1, t);
		float k[64 * 8], v[64 * 8];
		same = kvc_reader_next_header(r, &h) == KB_OK && h->n_tokens == n && !memcmp(h->tokens, t, 4 * (size_t)n) &&
		       !memcmp(h->model_fp, FP_A, 32) && kvc_reader_layer(r, k, v, 8) == 0 && k[3] == 1 + 0.75f &&
		       v[5] == -1 - 2.5f && kvc_reader_layer(r, k, v, 8) == 1 && k[0] == 2 &&
		       kvc_reader_layer(r, k, v, 8) == KB_EOF;
		kvc_reader_free(r);
	}
	ok(same, "the object reads back: tokens, fingerprint, both layers");
	free(path);
	ok(store_entry_get(st, key, &e) == KB_OK && e.hits == 1 && e.last_used == 1e9 + 60 && e.freq == 1,
	   "a get counts a hit: hits 1, last_used now, frequency 1");
	ok(store_has(st, key, NULL) == KB_OK && store_entry_get(st, key, &e) == KB_OK && e.hits == 1 &&
		   e.last_used == 1e9 + 60,
	   "store_has counts nothing");
	int fd = -1;
	ok(store_get_fd(st, key, &fd) == KB_OK && fd >= 0, "store_get_fd opens it");
	char magic[4];
	ok(fd >= 0 && read(fd, magic, 4) == 4 && kvc_sniff(magic, 4), "the fd reads a cache");
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < 5; i++)
		if (store_get(st, key, NULL))
			break;
	ok(store_entry_get(st, key, &e) == KB_OK && e.hits == 7 && e.freq == 3, "hits count on, frequency stops at 3");

	ok(store_get(st, "0123", NULL) == KB_ERR_ARG, "a malformed key: KB_ERR_ARG");

	/* a duplicate put is a no-op */
	bool existed = false;
	struct store_stats s0, s1;
	ok(store_stats(st, &s0) == KB_OK && put_fp(st, FP_A, 1, 9.0, &existed) == KB_OK && existed,
	   "putting it again: ok, and it says the object was there");
	int n_obj, n_tmp;
	count_files(dir, &n_obj, &n_tmp, NULL);
	ok(store_stats(st, &s1) == KB_OK && s1.entries == s0.entries && s1.bytes == s0.bytes && n_obj == 1 && n_tmp == 0,
	   "one entry, one file, no temporary file left");
	ok(store_entry_get(st, key, &e) == KB_OK && e.hits == 7 && e.cost == 0.5, "the entry keeps its hits and cost");

	/* the wrong key, the wrong description */
	char key2[65];
	key_of(FP_A, 2, key2);
	struct store_put p;
	rc = store_put_begin(st, key2, &p);
	if (!rc && !(rc = write_cache(p.fd, FP_A, 3)))
		rc = store_put_commit(st, &p, NULL);
	ok(rc == KB_ERR_MISMATCH && strstr(kb_error(), "another key"), "a cache put under another key is refused: %s",
	   kb_error());
	count_files(dir, &n_obj, &n_tmp, NULL);
	ok(n_tmp == 0 && store_has(st, key2, NULL) == KB_EOF, "and leaves nothing behind");
	rc = store_put_begin(st, key2, &p);
	struct store_meta m = { .n_tokens = 99, .cost = 1 };
	memcpy(m.model_fp, FP_A, 32);
	if (!rc && !(rc = write_cache(p.fd, FP_A, 2)))
		rc = store_put_commit(st, &p, &m);
	ok(rc == KB_ERR_MISMATCH, "a description that disagrees with the header is refused: %s", kb_error());
	rc = store_put_begin(st, key2, &p);
	if (!rc && !(rc = write_cache(p.fd, FP_A, 2)))
		rc = store_put_commit(st, &p, NULL);
	ok(rc == KB_OK && store_entry_get(st, key2, &e) == KB_OK && e.n_tokens == 17 && e.cost < 0,
	   "without a description: taken from the header, cost unknown");
	rc = store_put_begin(st, key2, &p);
	if (!rc) {
		ok(write(p.fd, "garbage", 7) == 7, "(garbage written)");
		rc = store_put_commit(st, &p, NULL);
	}
	ok(rc == KB_ERR_FORMAT, "garbage is refused: %s", kb_error());
	rc = store_put_begin(st, key2, &p);
	store_put_abort(st, &p);
	count_files(dir, &n_obj, &n_tmp, NULL);
	ok(rc == KB_OK && n_tmp == 0 && n_obj == 2, "store_put_abort removes the temporary file");

	/* a row whose file is gone; a file whose size is wrong; a file with no row */
	char *p2 = obj_path(st, 2);
	unlink(p2);
	ok(store_has(st, key2, NULL) == KB_EOF, "a row whose file is gone: a miss");
	ok(store_entry_get(st, key2, &e) == KB_EOF, "and the row is gone");
	ok(put(st, 2, 1) == KB_OK && store_has(st, key2, NULL) == KB_OK, "put again, found again");
	FILE *f = fopen(p2, "a");
	fputs("more", f);
	fclose(f);
	ok(store_get(st, key2, NULL) == KB_EOF && access(p2, F_OK) < 0 && store_entry_get(st, key2, &e) == KB_EOF,
	   "a file of the wrong size: a miss, file and row removed");
	ok(put(st, 2, 1) == KB_OK, "put again");
	ok(sql_exec(dir, "DELETE FROM objects") == 0, "(rows deleted behind the store's back)");
	ok(access(p2, F_OK) == 0 && store_get(st, key2, NULL) == KB_EOF && store_has(st, key, NULL) == KB_EOF,
	   "files without rows are never served");
	struct store_verify_result vr;
	ok(problems(st, true, &vr) == 2 && vr.orphans_adopted == 2 && vr.checked == 2, "verify adopts both");
	ok(store_has(st, key, NULL) == KB_OK && store_get(st, key2, NULL) == KB_OK, "and they are served again");
	ok(store_entry_get(st, key, &e) == KB_OK && e.n_tokens == 10 && e.cost < 0 && !strcmp(e.tool, "test_store") &&
		   !strcmp(e.model, "a1a2a3a4a5a6a7a8a9aaab000000000000000000000000000000000000000000"),
	   "an adopted row comes from the header (tokens, model, tool; cost unknown)");
	ok(problems(st, true, NULL) == 0, "a second verify finds nothing");

	/* pins, removal */
	ok(store_pin(st, key, true) == KB_OK && store_entry_get(st, key, &e) == KB_OK && e.pinned, "pin");
	ok(store_pin(st, key, false) == KB_OK && store_entry_get(st, key, &e) == KB_OK && !e.pinned, "unpin");
	char key9[65];
	key_of(FP_A, 9, key9);
	ok(store_pin(st, key9, true) == KB_EOF, "pinning a key not stored: KB_EOF");
	ok(store_remove(st, key2) == KB_OK && access(p2, F_OK) < 0 && store_has(st, key2, NULL) == KB_EOF,
	   "store_remove takes row and file");
	ok(store_remove(st, key2) == KB_EOF, "removing it again: KB_EOF");
	free(p2);
	store_close(st);
}

/* ---- many processes ---- */

static int child_puts(const char *dir, int first, int n)
{
	struct store *st;
	if (store_open(&st, dir)) {
		fprintf(stderr, "child open: %s\n", kb_error());
		return 1;
	}
	int bad = 0;
	for (int id = first; id < first + n; id++) {
		if (put(st, id, 0.01 * id)) {
			fprintf(stderr, "child put %d: %s\n", id, kb_error());
			bad++;
		}
		char key[65];
		key_of(FP_A, id, key);
		if (store_get(st, key, NULL) != KB_OK) {
			fprintf(stderr, "child get %d: %s\n", id, kb_error());
			bad++;
		}
	}
	store_close(st);
	return bad ? 1 : 0;
}

static void test_concurrent(void)
{
	const char *dir = new_dir(); /* not created yet: the children race to make it */
	pid_t pid[4];
	for (int k = 0; k < 4; k++) {
		fflush(stdout);
		if ((pid[k] = fork()) == 0)
			_exit(child_puts(dir, k * 15, 50));
	}
	int good = 0;
	for (int k = 0; k < 4; k++) {
		int status;
		if (waitpid(pid[k], &status, 0) == pid[k] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			good++;
	}
	ok(good == 4, "4 processes each put and get 50 overlapping keys into a new store at once");
	struct store *st;
	if (store_open(&st, dir)) {
		ok(0, "open: %s", kb_error());
		return;
	}
	struct store_stats s;
	int missing = 0;
	for (int id = 0; id < 95; id++)
		missing += has_id(st, id) != KB_OK;
	int n_obj, n_tmp;
	uint64_t bytes;
	count_files(dir, &n_obj, &n_tmp, &bytes);
	ok(missing == 0, "every key is there");
	ok(store_stats(st, &s) == KB_OK && s.entries == 95 && n_obj == 95 && n_tmp == 0 && s.bytes == bytes,
	   "each once: 95 rows, 95 files, their bytes, no temporary file (%llu rows, %d files)",
	   (unsigned long long)s.entries, n_obj);
	ok(s.hits == 200, "every get counted: 200 hits (%llu)", (unsigned long long)s.hits);
	struct store_verify_result r;
	ok(problems(st, true, &r) == 0 && r.ok == 95 && r.checked == 95, "verify reads all 95 and finds nothing wrong");
	store_close(st);
}

/* Writers, an evictor and a reader at once: whatever a get serves reads whole. */
static int child_mixed(const char *dir, int role)
{
	struct store *st;
	if (store_open(&st, dir))
		return 1;
	tap_rng = 0x9E3779B97F4A7C15ull * (unsigned long long)(role + 1) ^ (unsigned long long)getpid();
	int bad = 0, served = 0;
	uint64_t budget = 0;
	if (role == 2) { /* about a third of all 60 objects */
		for (int id = 0; id < 60; id++)
			budget += 300 + 136 * (uint64_t)tokens_of(id, (int32_t[64]){ 0 });
		budget /= 3;
	}
	/* the reader reads until it was served 40 objects (or 20 s went by) */
	double t_end = kb_now() + 20;
	for (int i = 0; role == 3 ? served < 40 && kb_now() < t_end : i < 120; i++) {
		int id = (int)tap_randf(0, 60);
		if (role == 3)
			usleep(1000);
		if (role < 2) { /* writers */
			if (put(st, id, 0.01) != KB_OK) {
				fprintf(stderr, "writer: %s\n", kb_error());
				bad++;
			}
		} else if (role == 2) { /* the evictor */
			struct store_evict_opts o = { .policy = (enum store_policy)(i % STORE_POLICY_COUNT), .max_bytes = budget };
			if (store_evict(st, &o, NULL, NULL, NULL)) {
				fprintf(stderr, "evictor: %s\n", kb_error());
				bad++;
			}
		} else { /* the reader */
			char key[65];
			int fd, rc;
			key_of(FP_A, id, key);
			if ((rc = store_get_fd(st, key, &fd)) == KB_OK) {
				struct kvc_reader *r;
				const struct kvc_header *h;
				int l = -9;
				if (kvc_reader_open_fd(&r, fd, key) == KB_OK) {
					if (kvc_reader_next_header(r, &h) == KB_OK)
						while ((l = kvc_reader_layer(r, NULL, NULL, 0)) >= 0)
							;
					kvc_reader_free(r);
				}
				close(fd);
				served++;
				if (l != KB_EOF) {
					fprintf(stderr, "reader: %s served broken: %s\n", key, kb_error());
					bad++;
				}
			} else if (rc != KB_EOF) {
				fprintf(stderr, "reader: %s\n", kb_error());
				bad++;
			}
		}
	}
	store_close(st);
	if (role == 3 && served == 0) {
		fprintf(stderr, "reader: not one hit\n");
		bad++;
	}
	return bad ? 1 : 0;
}

static void test_mixed(void)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir)) {
		ok(0, "open: %s", kb_error());
		return;
	}
	pid_t pid[4];
	for (int k = 0; k < 4; k++) {
		fflush(stdout);
		if ((pid[k] = fork()) == 0)
			_exit(child_mixed(dir, k));
	}
	int good = 0;
	for (int k = 0; k < 4; k++) {
		int status;
		if (waitpid(pid[k], &status, 0) == pid[k] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			good++;
	}
	ok(good == 4, "two writers, an evictor cycling the policies and a reader at once: no error, nothing broken served");
	struct store_verify_result r;
	int n_obj, n_tmp;
	count_files(dir, &n_obj, &n_tmp, NULL);
	struct store_stats s;
	ok(problems(st, true, &r) == 0 && store_stats(st, &s) == KB_OK && s.entries == (uint64_t)n_obj && n_tmp == 0,
	   "then the store verifies clean, one row per file (%d)", n_obj);
	store_close(st);
}

/* ---- killed in the middle ---- */

static void kill_hook(void *ctx, int point)
{
	if (point == *(int *)ctx)
		raise(SIGKILL);
}

static int run_child_killed(const char *dir, int mode)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		struct store *st;
		if (store_open(&st, dir))
			_exit(1);
		static int point;
		char key[65];
		key_of(FP_A, 40, key);
		if (mode == 0) { /* half an object written, then killed */
			struct store_put p;
			char tmp[400];
			snprintf(tmp, sizeof tmp, "%s/whole.kvc", root);
			int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || write_cache(fd, FP_A, 40))
				_exit(1);
			off_t n = lseek(fd, 0, SEEK_END);
			char buf[8192];
			if (pread(fd, buf, (size_t)n / 2, 0) != n / 2 || store_put_begin(st, key, &p) ||
			    write(p.fd, buf, (size_t)n / 2) != n / 2)
				_exit(1);
			raise(SIGKILL);
		} else if (mode == 1) { /* killed between the rename and the index row */
			point = STORE_HOOK_PUT_RENAMED;
			store_set_test_hook(st, kill_hook, &point);
			put(st, 40, 1);
		} else { /* killed in an eviction, after its first unlink */
			point = STORE_HOOK_EVICT_UNLINKED;
			store_set_test_hook(st, kill_hook, &point);
			struct store_evict_opts o = { .policy = STORE_LRU, .max_bytes = 0 };
			struct store_evict_result r;
			if (store_evict(st, &o, NULL, NULL, &r))
				_exit(1);
		}
		_exit(3); /* not killed: the test fails */
	}
	int status;
	return waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static void test_killed(void)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir)) {
		ok(0, "open: %s", kb_error());
		return;
	}
	for (int id = 0; id < 3; id++)
		if (put(st, id, 1))
			diag("put: %s", kb_error());
	char key[65];
	key_of(FP_A, 40, key);
	int n_obj, n_tmp;
	struct store_verify_result r;

	ok(run_child_killed(dir, 0), "a writer killed with half its object written");
	count_files(dir, &n_obj, &n_tmp, NULL);
	ok(n_tmp == 1 && store_has(st, key, NULL) == KB_EOF && store_get(st, key, NULL) == KB_EOF,
	   "its temporary file is there, and not served");
	ok(problems(st, true, &r) == 0 && r.live_temps == 1,
	   "verify leaves a temporary file younger than a minute alone (its writer may not have locked it yet)");
	store_set_clock(st, (double)time(NULL) + 120);
	ok(problems(st, true, &r) == 1 && r.stale_temps == 1, "two minutes on, unlocked: stale, removed");
	count_files(dir, &n_obj, &n_tmp, NULL);
	ok(n_tmp == 0 && n_obj == 3, "no temporary file left, the 3 objects untouched");
	store_set_clock(st, 0);

	struct store_put live;
	char key7[65];
	key_of(FP_A, 7, key7);
	ok(store_put_begin(st, key7, &live) == KB_OK, "(a put in progress in this process)");
	store_set_clock(st, (double)time(NULL) + 7200);
	ok(problems(st, true, &r) == 0 && r.live_temps == 1, "verify leaves a locked temporary file alone, however old");
	store_set_clock(st, 0);
	store_put_abort(st, &live);

	ok(run_child_killed(dir, 1), "a writer killed between the rename and its index row");
	char *p40 = obj_path(st, 40);
	ok(access(p40, F_OK) == 0 && store_has(st, key, NULL) == KB_EOF && store_get(st, key, NULL) == KB_EOF,
	   "its object is in place but not served (no row)");
	ok(problems(st, true, &r) == 1 && r.orphans_adopted == 1, "verify checks it whole and adopts it");
	ok(store_get(st, key, NULL) == KB_OK && problems(st, true, NULL) == 0, "now served; verify again: clean");
	free(p40);

	ok(run_child_killed(dir, 2), "an eviction killed after its first unlink, before its commit");
	struct store_stats s;
	int served = 0;
	for (int id = 0; id < 3; id++)
		served += has_id(st, id) == KB_OK;
	served += store_has(st, key, NULL) == KB_OK;
	ok(store_stats(st, &s) == KB_OK && s.entries == 3 && served == 3,
	   "the row of the unlinked object dropped by the lookup; the other 3 whole (%d served)", served);
	ok(problems(st, true, &r) == 0 && r.ok == 3, "verify: clean");
	store_close(st);
}

/* ---- corruption ---- */

static void test_corrupt(void)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir)) {
		ok(0, "open: %s", kb_error());
		return;
	}
	for (int id = 0; id < 4; id++)
		if (put(st, id, 1))
			diag("put: %s", kb_error());
	char *p1 = obj_path(st, 1), *p2 = obj_path(st, 2);
	struct stat sb;
	stat(p1, &sb);
	flip_byte(p1, (long)sb.st_size - 100); /* in the last layer's payload */
	flip_byte(p2, 20);                     /* in the header's fingerprint */
	ok(has_id(st, 1) == KB_OK, "a flipped byte is not seen by a lookup (sizes agree)");
	struct store_verify_result r;
	ok(problems(st, false, &r) == 2 && r.corrupt == 2 && has_id(st, 1) == KB_OK && access(p2, F_OK) == 0,
	   "verify without repair finds both and changes nothing");
	ok(problems(st, true, &r) == 2 && r.corrupt == 2 && r.ok == 2 && r.repaired == 2,
	   "verify finds a bad layer checksum and a bad header, removes them");
	ok(has_id(st, 1) == KB_EOF && has_id(st, 2) == KB_EOF && access(p1, F_OK) < 0 && access(p2, F_OK) < 0,
	   "gone: rows and files");
	ok(problems(st, true, NULL) == 0, "a second verify: clean");

	/* a broken orphan, a stranger, a cache under another key */
	int fd = open(p1, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ok(fd >= 0 && write_cache(fd, FP_A, 1) == KB_OK && ftruncate(fd, 200) == 0, "(a truncated object with no row)");
	close(fd);
	char odd[400];
	snprintf(odd, sizeof odd, "%s/objects/zz", dir);
	mkdir(odd, 0777);
	snprintf(odd, sizeof odd, "%s/objects/00", dir);
	mkdir(odd, 0777);
	strcat(odd, "/notes.txt");
	FILE *f = fopen(odd, "w");
	fclose(f);
	fd = open(p2, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ok(fd >= 0 && write_cache(fd, FP_A, 3) == KB_OK, "(object 3's cache under key 2, no row)");
	close(fd);
	ok(problems(st, true, &r) == 4 && r.orphans_removed == 2 && r.unknown == 2,
	   "verify removes the broken orphans, reports the strangers");
	ok(access(p1, F_OK) < 0 && access(p2, F_OK) < 0 && access(odd, F_OK) == 0, "the strangers are left alone");
	unlink(odd);
	snprintf(odd, sizeof odd, "%s/objects/zz", dir);
	rmdir(odd);
	ok(problems(st, true, NULL) == 0, "clean again");

	/* an object of a newer major version: not this version's to judge */
	char *p3 = obj_path(st, 3);
	int fd3 = open(p3, O_RDWR);
	ok(fd3 >= 0 && pwrite(fd3, "\x09\x00", 2, 4) == 2, "(object 3 says major version 9)");
	close(fd3);
	ok(problems(st, true, &r) == 1 && r.unknown == 1 && access(p3, F_OK) == 0 && has_id(st, 3) == KB_OK,
	   "verify reports an object of another major version and leaves it alone");
	ok(store_remove(st, v_key(3)) == KB_OK && problems(st, true, NULL) == 0, "(removed) clean again");
	free(p3);
	free(p1);
	free(p2);
	store_close(st);
}

/* ---- eviction ---- */

struct victims {
	char key[64][65];
	uint64_t size[64];
	int n;
};

static void on_evict(void *ctx, const char *key, uint64_t size, const char *reason)
{
	struct victims *v = ctx;
	if (v->n < 64) {
		memcpy(v->key[v->n], key, 65);
		v->size[v->n++] = size;
	}
	(void)reason;
}

static int id_of(const char *key)
{
	for (int id = 0; id < 64; id++) {
		char k[65];
		key_of(FP_A, id, k);
		if (!strcmp(k, key))
			return id;
	}
	return -1;
}

/* The cost put with object id: 0.1 (id + 1) seconds, or with cheap0, a second
 * per token but object 0 a hundredth of that. */
static double cost_of(int id, bool cheap0)
{
	int32_t t[64];
	return cheap0 ? tokens_of(id, t) * (id == 0 ? 0.01 : 1.0) : 0.1 * (id + 1);
}

/* A store of n objects put one a second from t0; returns it and its bytes. */
static struct store *filled_cost(int n, double t0, uint64_t *bytes, bool cheap0)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir))
		return NULL;
	for (int id = 0; id < n; id++) {
		store_set_clock(st, t0 + id);
		if (put(st, id, cost_of(id, cheap0)))
			diag("put: %s", kb_error());
	}
	struct store_stats s;
	if (store_stats(st, &s))
		return NULL;
	*bytes = s.bytes;
	return st;
}

static struct store *filled(int n, double t0, uint64_t *bytes)
{
	return filled_cost(n, t0, bytes, false);
}

static void get_id(struct store *st, int id, double t)
{
	char key[65];
	key_of(FP_A, id, key);
	store_set_clock(st, t);
	if (store_get(st, key, NULL) < KB_EOF)
		diag("get %d: %s", id, kb_error());
}

static uint64_t entry_size(struct store *st, int id)
{
	char key[65];
	struct store_entry e;
	key_of(FP_A, id, key);
	return store_entry_get(st, key, &e) == KB_OK ? e.size : 0;
}

static void test_lru_lfu(void)
{
	uint64_t total;
	const double t0 = 1.7e9;
	struct store *st = filled(12, t0, &total);
	if (!st) {
		ok(0, "fill: %s", kb_error());
		return;
	}
	get_id(st, 0, t0 + 100);
	get_id(st, 1, t0 + 101);
	char key3[65];
	key_of(FP_A, 3, key3);
	ok(store_pin(st, key3, true) == KB_OK, "(object 3 pinned)");
	/* budget: drop about 5 objects' worth */
	uint64_t want_drop = entry_size(st, 2) + entry_size(st, 4) + entry_size(st, 5) + entry_size(st, 6);
	struct store_evict_opts o = { .policy = STORE_LRU, .max_bytes = total - want_drop, .dry_run = true };
	struct victims dry = { 0 }, real = { 0 };
	struct store_evict_result r;
	store_set_clock(st, t0 + 200);
	int rc = store_evict(st, &o, on_evict, &dry, &r);
	ok(rc == KB_OK && dry.n == 4 && id_of(dry.key[0]) == 2 && id_of(dry.key[1]) == 4 && id_of(dry.key[2]) == 5 &&
		   id_of(dry.key[3]) == 6,
	   "LRU dry run: 2, 4, 5, 6 (oldest last use first; 0 and 1 were used, 3 is pinned)");
	struct store_stats s;
	ok(store_stats(st, &s) == KB_OK && s.entries == 12 && s.bytes == total, "the dry run removed nothing");
	o.dry_run = false;
	rc = store_evict(st, &o, on_evict, &real, &r);
	ok(rc == KB_OK && real.n == dry.n && !memcmp(real.key, dry.key, sizeof real.key[0] * (size_t)dry.n),
	   "the real run removes exactly what the dry run said");
	ok(store_stats(st, &s) == KB_OK && s.bytes <= o.max_bytes && s.bytes == r.bytes_left && r.n_removed == 4 &&
		   r.bytes_removed == want_drop && s.entries == 8,
	   "under the budget: %llu <= %llu bytes", (unsigned long long)s.bytes, (unsigned long long)o.max_bytes);
	ok(has_id(st, 2) == KB_EOF && has_id(st, 3) == KB_OK && has_id(st, 0) == KB_OK, "gone and kept as said");
	int n_obj, n_tmp;
	count_files(store_dir(st), &n_obj, &n_tmp, NULL);
	ok(n_obj == 8, "their files went too");
	store_close(st);

	/* LFU: fewest hits first, then the least recently used */
	st = filled(10, t0, &total);
	if (!st)
		return;
	double t = t0 + 50;
	for (int id = 0; id < 10; id++)
		for (int h = 0; h < (id + 1) % 4; h++)
			get_id(st, id, t += 1); /* hits: 1 2 3 0 1 2 3 0 1 2 for ids 0..9 */
	uint64_t drop = entry_size(st, 3) + entry_size(st, 7) + entry_size(st, 0);
	o = (struct store_evict_opts){ .policy = STORE_LFU, .max_bytes = total - drop };
	struct victims v = { 0 };
	rc = store_evict(st, &o, on_evict, &v, &r);
	ok(rc == KB_OK && v.n == 3 && id_of(v.key[0]) == 3 && id_of(v.key[1]) == 7 && id_of(v.key[2]) == 0,
	   "LFU: 3 and 7 (no hit, 3 older), then 0 (one hit, used before 4 and 8)");
	ok(store_stats(st, &s) == KB_OK && s.bytes <= o.max_bytes, "under the budget");
	store_close(st);
}

static void test_cost(void)
{
	uint64_t total;
	const double t0 = 1.7e9;
	struct store *st = filled_cost(8, t0, &total, true);
	if (!st)
		return;
	/* a second per token, object 0 a hundredth; object 6 last used 10 half-lives ago */
	get_id(st, 6, t0 + 10);
	for (int id = 0; id < 8; id++)
		if (id != 6)
			get_id(st, id, t0 + 10 * 86400);
	struct store_evict_opts o = { .policy = STORE_COST, .max_bytes = total - entry_size(st, 6) - entry_size(st, 0),
				      .half_life = 86400 };
	struct victims v = { 0 };
	struct store_evict_result r;
	int rc = store_evict(st, &o, on_evict, &v, &r);
	ok(rc == KB_OK && v.n == 2 && id_of(v.key[0]) == 6 && id_of(v.key[1]) == 0,
	   "cost: first 6 (expensive but unused for 10 half-lives), then 0 (cheapest per byte)");
	struct store_stats s;
	ok(store_stats(st, &s) == KB_OK && s.bytes <= o.max_bytes, "under the budget");
	store_close(st);
}

static void test_s3fifo(void)
{
	uint64_t total;
	const double t0 = 1.7e9;
	struct store *st = filled(10, t0, &total);
	if (!st)
		return;
	for (int id = 0; id < 3; id++)
		get_id(st, id, t0 + 100 + id);
	/* drop about 4 objects: S (all 10) is over 10% of the budget, so S is popped:
	 * 0, 1, 2 were hit and move to M; 3, 4, 5, 6 go */
	uint64_t drop = entry_size(st, 3) + entry_size(st, 4) + entry_size(st, 5) + entry_size(st, 6);
	struct store_evict_opts o = { .policy = STORE_S3FIFO, .max_bytes = total - drop };
	struct victims v = { 0 };
	struct store_evict_result r;
	int rc = store_evict(st, &o, on_evict, &v, &r);
	ok(rc == KB_OK && v.n == 4 && id_of(v.key[0]) == 3 && id_of(v.key[1]) == 4 && id_of(v.key[2]) == 5 &&
		   id_of(v.key[3]) == 6,
	   "S3-FIFO: the small queue's unused objects go in FIFO order (3, 4, 5, 6)");
	char key[65];
	struct store_entry e;
	key_of(FP_A, 1, key);
	ok(store_entry_get(st, key, &e) == KB_OK && e.queue == STORE_QUEUE_MAIN && e.freq == 1,
	   "a used one moved to the main queue, keeping its frequency");
	key_of(FP_A, 7, key);
	ok(store_entry_get(st, key, &e) == KB_OK && e.queue == STORE_QUEUE_SMALL, "the unused later ones stay in S");
	struct store_stats s;
	ok(store_stats(st, &s) == KB_OK && s.ghosts == 4 && s.bytes <= o.max_bytes, "4 ghosts; under the budget");
	ok(put(st, 4, 1) == KB_OK && store_entry_get(st, v.key[1], &e) == KB_OK && e.queue == STORE_QUEUE_MAIN,
	   "a ghost put again enters the main queue");
	ok(store_stats(st, &s) == KB_OK && s.ghosts == 3, "and leaves the ghost set");

	/* the main queue: a used object gets another round, an unused one goes */
	o.max_bytes = 0;
	v.n = 0;
	key_of(FP_A, 0, key);
	ok(store_pin(st, key, true) == KB_OK, "(object 0 pinned)");
	rc = store_evict(st, &o, on_evict, &v, &r);
	int last = v.n ? id_of(v.key[v.n - 1]) : -1;
	ok(rc == KB_OK && r.n_left == 1 && r.bytes_left == r.bytes_pinned && has_id(st, 0) == KB_OK,
	   "a budget of 0: everything but the pinned object goes");
	ok(last == 1 || last == 2, "objects 1 and 2 (used) go last (last: %d)", last);
	store_close(st);
}

/* every policy: under the budget, pins kept, on random uses */
static void test_policies(void)
{
	for (int pol = 0; pol < STORE_POLICY_COUNT; pol++) {
		uint64_t total;
		const double t0 = 1.7e9;
		struct store *st = filled(24, t0, &total);
		if (!st)
			return;
		double t = t0 + 100;
		for (int i = 0; i < 40; i++)
			get_id(st, (int)tap_randf(0, 24), t += tap_randf(1, 1000));
		char key[65];
		int pinned[3] = { 0, 7, 19 };
		for (int i = 0; i < 3; i++) {
			key_of(FP_A, pinned[i], key);
			if (store_pin(st, key, true))
				diag("pin: %s", kb_error());
		}
		uint64_t budget = total / 3;
		bool fine = true;
		for (int round = 0; round < 3 && fine; round++, budget /= 2) {
			struct store_evict_opts o = { .policy = (enum store_policy)pol, .max_bytes = budget };
			struct store_evict_result r;
			struct store_stats s;
			fine = store_evict(st, &o, NULL, NULL, &r) == KB_OK && store_stats(st, &s) == KB_OK &&
			       (s.bytes <= budget || s.bytes == s.pinned_bytes) && s.bytes == r.bytes_left;
			for (int i = 0; i < 3; i++)
				fine = fine && has_id(st, pinned[i]) == KB_OK;
			for (int i = 0; i < 10; i++)
				get_id(st, (int)tap_randf(0, 24), t += 10);
			if (!fine)
				diag("round %d: %s", round, kb_error());
		}
		ok(fine, "%s: three rounds, each under its budget, the pinned objects kept", store_policy_name(pol));
		ok(problems(st, true, NULL) == 0, "%s: the store verifies clean after", store_policy_name(pol));
		store_close(st);
	}
	ok(store_policy_from_name("LRU") == STORE_LRU && store_policy_from_name("s3fifo") == STORE_S3FIFO &&
		   store_policy_from_name("cost") == STORE_COST && store_policy_from_name("fifo") == -1,
	   "policy names");
}

static int count_model(void *ctx, const struct store_model_stats *m)
{
	int *n = ctx;
	if (!strncmp(m->model, "b1b2b3b4", 8) && m->entries == 2 && m->hits == 1)
		n[0]++;
	if (!strncmp(m->model, "a1a2a3a4", 8) && m->entries == 3 && m->hits == 0)
		n[1]++;
	return 0;
}

static int count_entry(void *ctx, const struct store_entry *e)
{
	(*(int *)ctx)++;
	return 0;
}

static void test_stats(void)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir))
		return;
	int rc = 0;
	for (int id = 0; id < 3; id++) {
		store_set_clock(st, 1000 + id);
		rc |= put_fp(st, FP_A, id, 1, NULL);
	}
	for (int id = 0; id < 2; id++) {
		store_set_clock(st, 2000 + id);
		rc |= put_fp(st, FP_B, id, 1, NULL);
	}
	char key[65];
	key_of(FP_B, 1, key);
	store_set_clock(st, 3000);
	rc |= store_get(st, key, NULL);
	rc |= store_pin(st, key, true);
	struct store_stats s;
	struct store_entry e;
	int n_obj, n_tmp;
	uint64_t bytes;
	count_files(dir, &n_obj, &n_tmp, &bytes);
	rc |= store_entry_get(st, key, &e);
	ok(!rc && store_stats(st, &s) == KB_OK && s.entries == 5 && s.bytes == bytes && s.hits == 1 && s.models == 2 &&
		   s.pinned == 1 && s.pinned_bytes == e.size &&
		   s.oldest == 1000 && s.newest == 2001 && s.last_used == 3000 && s.tokens == 3 + 10 + 17 + 3 + 10,
	   "stats: entries, bytes, hits, models, pins, oldest, newest, last use, tokens");
	int n[2] = { 0, 0 };
	ok(store_stats_models(st, count_model, n) == KB_OK && n[0] == 1 && n[1] == 1, "per model");
	int count = 0;
	ok(store_list(st, count_entry, &count) == KB_OK && count == 5, "store_list walks every row");
	store_close(st);
}

/* ---- trust: keys, non-regular files, races, read-only stores (issue 10) ---- */

static int count_rows(const char *dir, const char *where)
{
	char p[400], sql[300];
	sqlite3 *db;
	sqlite3_stmt *s;
	int n = -1;
	snprintf(p, sizeof p, "%s/index.db", dir);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM objects WHERE %s", where);
	if (sqlite3_open(p, &db) == SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			n = sqlite3_column_int(s, 0);
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
	return n;
}

/* Item 2: a planted key never makes a path outside objects/. */
static void test_bad_keys(void)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir)) {
		ok(0, "open: %s", kb_error());
		return;
	}
	ok(put(st, 1, 1.0) == KB_OK, "bad keys: a sound object");
	/* the old path of key "../../victim" was DIR/objects/..//../victim.kvc = DIR/../victim.kvc */
	char victim[400], sql[300];
	snprintf(victim, sizeof victim, "%s/../victim-%d.kvc", dir, n_dirs);
	int fd = open(victim, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ok(fd >= 0 && write(fd, "precious", 8) == 8 && close(fd) == 0, "a file outside the store");
	snprintf(sql, sizeof sql, "INSERT INTO objects (key, size, n_tokens, model, created, last_used)"
		 " VALUES ('../../victim-%d', 8, 1, 'x', 1, 1)", n_dirs);
	ok(sql_exec(dir, sql) == 0, "a planted row whose key climbs out of objects/");
	ok(store_object_path(st, "../../x") == NULL, "store_object_path refuses a malformed key: %s", kb_error());
	ok(store_get(st, "../../x", NULL) == KB_ERR_ARG && store_remove(st, "../../x") == KB_ERR_ARG &&
	   store_pin(st, "../../x", true) == KB_ERR_ARG, "get, remove and pin refuse it");
	struct store_evict_opts o = { .policy = STORE_LRU, .max_bytes = 0, .dry_run = true };
	struct store_evict_result r;
	int rc = store_evict(st, &o, NULL, NULL, &r);
	ok(rc == KB_OK && r.n_bad_rows == 1 && r.n_removed == 1, "a dry run counts the planted row apart (%llu bad, %llu removed)",
	   (unsigned long long)r.n_bad_rows, (unsigned long long)r.n_removed);
	o.dry_run = false;
	rc = store_evict(st, &o, NULL, NULL, &r);
	ok(rc == KB_OK, "evict --max-bytes 0 with a planted row: %s", rc ? kb_error() : "ok");
	ok(access(victim, F_OK) == 0, "the file outside the store is still there");
	ok(r.n_bad_rows == 1 && count_rows(dir, "1") == 0, "the planted row is gone from the index");
	ok(sql_exec(dir, "INSERT INTO objects (key, size, n_tokens, model, created, last_used)"
			 " VALUES ('../../victim', 8, 1, 'x', 1, 1)") == 0, "planted again");
	struct store_verify_result vr;
	ok(store_verify(st, true, NULL, NULL, &vr) == KB_OK && vr.bad_rows == 1 && access(victim, F_OK) == 0,
	   "verify removes it too, touching no file");
	unlink(victim);
	store_close(st);
}

/* What a child reports through its exit status: 0 when every check passed. */
static int child_nonregular(const char *dir)
{
	alarm(30); /* a FIFO used to hang the lookup and the verify: fail, do not hang */
	struct store *st;
	if (store_open(&st, dir))
		return 10;
	char k1[65], k2[65];
	key_of(FP_A, 1, k1);
	key_of(FP_A, 2, k2);
	int fd;
	if (store_get_fd(st, k1, &fd) != KB_EOF || store_has(st, k2, NULL) != KB_EOF)
		return 11; /* a FIFO and a folder are misses */
	if (put(st, 3, 1.0) || put(st, 4, 1.0))
		return 12;
	store_close(st);
	return 0;
}

/* Item 6: a FIFO or a folder in an object's place. */
static void test_nonregular(void)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir)) {
		ok(0, "open: %s", kb_error());
		return;
	}
	for (int id = 1; id <= 4; id++)
		if (put(st, id, 1.0))
			ok(0, "put %d: %s", id, kb_error());
	char *p1 = obj_path(st, 1), *p2 = obj_path(st, 2), *p3 = obj_path(st, 3), *p4 = obj_path(st, 4);
	ok(unlink(p1) == 0 && mkfifo(p1, 0644) == 0 && unlink(p2) == 0 && mkdir(p2, 0755) == 0,
	   "object 1 is now a FIFO, object 2 a folder");
	ok(unlink(p3) == 0 && mkfifo(p3, 0644) == 0 && unlink(p4) == 0 && mkdir(p4, 0755) == 0,
	   "and so are objects 3 and 4");
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(child_nonregular(dir));
	int status;
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "lookups of a FIFO and a folder are misses, and putting over them works (%s %d)",
	   WIFSIGNALED(status) ? "signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	struct store_verify_result r;
	ok(unlink(p3) == 0 && mkfifo(p3, 0644) == 0 && unlink(p4) == 0 && mkdir(p4, 0755) == 0, "FIFO and folder again");
	fflush(stdout);
	if ((pid = fork()) == 0) {
		alarm(30);
		struct store *s2;
		struct store_verify_result r2;
		_exit(store_open(&s2, dir) || store_verify(s2, true, NULL, NULL, &r2) || r2.corrupt != 2 ? 1 : 0);
	}
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "verify finds both as corrupt and repairs them, without hanging");
	struct stat sb;
	ok(lstat(p3, &sb) < 0 && lstat(p4, &sb) < 0, "the FIFO and the folder are gone");
	ok(problems(st, false, &r) == 0, "a second verify finds nothing");
	ok(put(st, 3, 1.0) == KB_OK && put(st, 4, 1.0) == KB_OK && has_id(st, 3) == KB_OK && has_id(st, 4) == KB_OK,
	   "the objects can be stored again");
	/* an orphan FIFO (no row) named like an object */
	char *p9 = obj_path(st, 9);
	char d9[600];
	snprintf(d9, sizeof d9, "%.*s", (int)(strrchr(p9, '/') - p9), p9);
	mkdir(d9, 0777);
	ok(mkfifo(p9, 0644) == 0, "an orphan FIFO named like an object");
	ok(problems(st, true, &r) == 1 && r.orphans_removed == 1 && lstat(p9, &sb) < 0, "verify removes it");
	free(p1), free(p2), free(p3), free(p4), free(p9);
	store_close(st);
}

/* Item 3: verify judges against the row as it is, not a stale one. The hook
 * (in the verifying process, on another connection) evicts the object and
 * puts it back as f16 (the same key, another size) at one moment of verify. */
struct swap_ctx {
	const char *dir;
	int point, id, fired;
};

static void swap_hook(void *vctx, int point)
{
	struct swap_ctx *c = vctx;
	if (point != c->point || c->fired++)
		return;
	struct store *s2;
	char key[65];
	key_of(FP_A, c->id, key);
	if (store_open(&s2, c->dir) || store_remove(s2, key))
		abort();
	cache_dtype = cache_dtype == KVC_F32 ? KVC_F16 : KVC_F32;
	int rc = put(s2, c->id, 1.0);
	store_close(s2);
	if (rc)
		abort();
}

static void test_verify_race(void)
{
	int points[2] = { STORE_HOOK_VERIFY_LISTED, STORE_HOOK_VERIFY_READ };
	for (int i = 0; i < 4; i++) {
		const char *dir = new_dir();
		struct store *st;
		if (store_open(&st, dir)) {
			ok(0, "open: %s", kb_error());
			return;
		}
		bool repair = i & 1;
		cache_dtype = KVC_F32;
		ok(put(st, 7, 1.0) == KB_OK, "race: a sound object");
		uint64_t size0 = entry_size(st, 7);
		struct swap_ctx c = { dir, points[i / 2], 7, 0 };
		store_set_test_hook(st, swap_hook, &c);
		struct store_verify_result r;
		uint64_t n = problems(st, repair, &r);
		store_set_test_hook(st, NULL, NULL);
		uint64_t size1 = entry_size(st, 7);
		ok(c.fired == 1 && size1 != size0, "the object was put again as %s meanwhile (%llu -> %llu bytes)",
		   cache_dtype == KVC_F16 ? "f16" : "f32", (unsigned long long)size0, (unsigned long long)size1);
		ok(n == 0, "verify%s with the object swapped %s reading it: no problem reported (%llu)",
		   repair ? "" : " -n", i / 2 ? "after" : "before", (unsigned long long)n);
		char *p = obj_path(st, 7);
		struct stat sb;
		ok(has_id(st, 7) == KB_OK && stat(p, &sb) == 0 && (uint64_t)sb.st_size == size1,
		   "the sound cache put meanwhile is still there");
		free(p);
		cache_dtype = KVC_F32;
		store_close(st);
	}
}

/* A child of the bounded race: role 0, 1 put (f32, f16), 2 evicts, 3 verifies
 * with repair, 4 verifies without. Verifiers exit 1 on any problem. */
static int child_race(const char *dir, int role, double until, int rounds)
{
	struct store *st;
	if (store_open(&st, dir))
		return 2;
	cache_dtype = role == 1 ? KVC_F16 : KVC_F32;
	srand((unsigned)getpid());
	for (int i = 0; i < rounds; i++) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		if ((double)ts.tv_sec + ts.tv_nsec * 1e-9 > until)
			break;
		if (role <= 1) {
			if (put(st, rand() % 12, 1.0))
				return 3;
		} else if (role == 2) {
			struct store_evict_opts o = { .policy = STORE_LRU, .max_bytes = (uint64_t)(rand() % 4000) };
			if (store_evict(st, &o, NULL, NULL, NULL))
				return 4;
		} else {
			struct store_verify_result r;
			if (store_verify(st, role == 3, NULL, NULL, &r))
				return 5;
			uint64_t bad = store_verify_problems(&r) - r.stale_temps;
			if (bad) {
				fprintf(stderr, "# verify%s: missing %llu, size %llu, corrupt %llu, rows %llu, adopted %llu,"
						" orphans removed %llu\n", role == 3 ? "" : " -n",
					(unsigned long long)r.missing, (unsigned long long)r.bad_size,
					(unsigned long long)r.corrupt, (unsigned long long)r.bad_rows,
					(unsigned long long)r.orphans_adopted, (unsigned long long)r.orphans_removed);
				return 1;
			}
		}
	}
	store_close(st);
	return 0;
}

/* Item 3: evict, two writers (the same keys at two sizes) and two verifiers at
 * once, bounded by rounds and by time: no verifier may find (or remove) a
 * problem, since nothing here is broken. */
static void test_race_loop(void)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir)) {
		ok(0, "open: %s", kb_error());
		return;
	}
	store_close(st);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	double until = (double)ts.tv_sec + 8.0;
	pid_t pids[5];
	fflush(stdout);
	for (int role = 0; role < 5; role++)
		if ((pids[role] = fork()) == 0)
			_exit(child_race(dir, role, until, role <= 1 ? 3000 : 400));
	int bad = 0;
	for (int role = 0; role < 5; role++) {
		int status;
		waitpid(pids[role], &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			bad++;
			diag("role %d: %s %d", role, WIFEXITED(status) ? "exit" : "signal",
			     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		}
	}
	ok(bad == 0, "8 s of concurrent puts (two sizes per key), evictions and verifies: no sound cache reported or removed");
	if (store_open(&st, dir) == KB_OK) {
		struct store_verify_result r;
		ok(problems(st, false, &r) == 0, "and the store verifies clean");
		store_close(st);
	}
}

/* Item 7: a store the process cannot write serves lookups; writes fail with a
 * message. As root (which ignores modes) the child becomes nobody. */
static int child_readonly(const char *dir)
{
	if (geteuid() == 0 && (setgroups(0, NULL) || setgid(65534) || setuid(65534)))
		return 20;
	if (access(dir, W_OK) == 0)
		return 21;
	struct store *st;
	if (store_open_existing(&st, dir))
		return fprintf(stderr, "# %s\n", kb_error()), 22;
	if (!store_readonly(st))
		return 23;
	int fd;
	char *path;
	if (store_get_fd(st, v_key(1), &fd) != KB_OK)
		return fprintf(stderr, "# %s\n", kb_error()), 24;
	close(fd);
	if (store_get(st, v_key(1), &path) != KB_OK)
		return 25;
	free(path);
	struct store_stats s;
	struct store_verify_result r;
	if (store_stats(st, &s) || s.entries != 2 || store_verify(st, false, NULL, NULL, &r) ||
	    store_verify_problems(&r))
		return 26;
	struct store_evict_opts o = { .policy = STORE_LRU, .max_bytes = 0, .dry_run = true };
	struct store_evict_result er;
	if (store_evict(st, &o, NULL, NULL, &er) || er.n_removed != 2)
		return 27;
	o.dry_run = false;
	if (store_evict(st, &o, NULL, NULL, NULL) != KB_ERR_IO || !strstr(kb_error(), "read-only"))
		return 28;
	if (put(st, 5, 1.0) != KB_ERR_IO || !strstr(kb_error(), "read-only"))
		return 29;
	store_close(st);
	return 0;
}

static void ro_skip(const char *why)
{
	ok(1, "a read-only store # SKIP %s", why);
}

static void test_readonly(void)
{
	const char *dir = new_dir();
	struct store *st;
	if (store_open(&st, dir)) {
		ok(0, "open: %s", kb_error());
		return;
	}
	ok(put(st, 1, 1.0) == KB_OK && put(st, 2, 1.0) == KB_OK, "read-only: two objects");
	store_close(st);
	char cmd[700];
	/* readable by all, writable by none but root; root's child becomes nobody */
	snprintf(cmd, sizeof cmd, "chmod -R a+rX,go-w '%s' && chmod a-w '%s' '%s/index.db' && chmod a+x '%s'", root,
		 dir, dir, root);
	if (system(cmd) != 0) {
		ro_skip("chmod failed: cannot make a read-only store");
		return;
	}
	if (geteuid() == 0) {
		/* nobody must reach the store: every folder above it searchable */
		char up[300];
		snprintf(up, sizeof up, "%s", root);
		for (char *e; (e = strrchr(up, '/')) && e != up; *e = '\0') {
			struct stat sb;
			if (stat(up, &sb) == 0 && !(sb.st_mode & S_IXOTH)) {
				ro_skip("a folder above the scratch folder is closed to others: cannot test as nobody");
				return;
			}
		}
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(child_readonly(dir));
	int status;
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "a store the user %s may not write: lookups, stats, verify -n and a dry run work; evict and put fail saying read-only (%d)",
	   geteuid() == 0 ? "nobody" : "this user", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'", dir);
	if (system(cmd) != 0)
		diag("chmod back failed");
}

/* Item 19: opening an existing store creates nothing. */
static void test_open_existing(void)
{
	const char *dir = new_dir();
	struct store *st;
	ok(store_open_existing(&st, dir) == KB_ERR_ARG && strstr(kb_error(), "no such store"),
	   "store_open_existing on a missing folder: %s", kb_error());
	ok(access(dir, F_OK) < 0, "and nothing was created");
	ok(mkdir(dir, 0777) == 0 && store_open_existing(&st, dir) == KB_ERR_ARG && strstr(kb_error(), "no cache store"),
	   "on a folder without index.db: %s", kb_error());
	char p[400];
	snprintf(p, sizeof p, "%s/index.db", dir);
	ok(access(p, F_OK) < 0, "and index.db was not created");
}

int main(void)
{
	tap_seed();
	snprintf(root, sizeof root, "%s/kvblend-test-store.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	test_keys();
	test_open();
	test_round_trip();
	test_concurrent();
	test_mixed();
	test_killed();
	test_corrupt();
	test_lru_lfu();
	test_cost();
	test_s3fifo();
	test_policies();
	test_replace();
	test_upgrade();
	test_stats();
	test_bad_keys();
	test_nonregular();
	test_verify_race();
	test_race_loop();
	test_open_existing();
	test_readonly(); /* last: it makes the scratch folder read-only for others */
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	if (!tap_failed && system(cmd) != 0)
		diag("could not remove %s", root);
	else if (tap_failed)
		diag("scratch left in %s", root);
	return done_testing();
}
