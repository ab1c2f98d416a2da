/* test_kvfile — a run of KV-cache slots saved and read back exactly (tokens,
 * positions, K, V, logits), refused by another model or a full cache; and the
 * atomic write under it (prefill -o, blend -o): a SIGTERM in the middle or an
 * exit() leaves no temporary file and no target, and leftovers of dead
 * processes are removed when the file is written again. A tiny synthetic model
 * (synth.h): no ../shared needed. */
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kvfile.h"
#include "store.h"
#include "synth.h"
#include "tap.h"

static char dir[4200];

/* Files in dir whose name starts with ".base." and ends in ".tmp". */
static int count_temps(const char *base)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	size_t bl = strlen(base);
	while (d && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (e->d_name[0] == '.' && !strncmp(e->d_name + 1, base, bl) && e->d_name[bl + 1] == '.' && l > 4 &&
		    !strcmp(e->d_name + l - 4, ".tmp"))
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

static bool exists(const char *name)
{
	char p[4400];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

static struct model *tiny(const char *shape, const char *name)
{
	char p[4400];
	struct synth_spec sp;
	struct model *m;
	snprintf(p, sizeof p, "%s/%s", dir, name);
	if (synth_shape(shape, &sp) || (sp.seed = 7, synth_write(p, &sp)) || model_load(&m, p)) {
		printf("Bail out! %s: %s\n", shape, kb_error());
		exit(1);
	}
	return m;
}

static void test_roundtrip(const struct model *m, const struct model *other)
{
	struct kv_cache kv, back;
	struct model_ws ws;
	int32_t tok[8] = { 1, 300, 301, 302, 303, 304, 305, 306 }, pos[8];
	for (int i = 0; i < 8; i++)
		pos[i] = i;
	ASSERT(kv_cache_init(&kv, m, 8) == KB_OK && model_ws_init(&ws, m, 8, 8) == KB_OK);
	ASSERT(model_forward(m, &ws, &kv, tok, pos, 8, ws.logits, false) == KB_OK);
	struct kvc_header h;
	kvfile_header(&h, m, &kv, 2, 5, ws.logits, KVC_F32, "test_kvfile", 0, NULL);
	ok(h.n_tokens == 5 && h.tokens == kv.tok + 2 && h.n_logits == m->hp.n_vocab && h.n_layer == m->hp.n_layer,
	   "header: slots 2..6, the logits, the model's shape");
	char p[4400];
	snprintf(p, sizeof p, "%s/c.kvc", dir);
	ok(kvfile_write_path(p, &h, &kv, 2) == KB_OK, "write_path: %s", kb_error());

	ASSERT(kv_cache_init(&back, m, 8) == KB_OK);
	back.n = 1; /* read after a slot in use */
	struct kvc_reader *r;
	const struct kvc_header *rh;
	int rc = kvc_reader_open_file(&r, p);
	if (rc == KB_OK)
		rc = kvc_reader_next_header(r, &rh);
	ok(rc == KB_OK && kvfile_read(r, rh, m, &back) == KB_OK && back.n == 6, "read: into slots 1..5 (%s)",
	   kb_error());
	bool same = true;
	for (int l = 0; l < m->hp.n_layer; l++)
		same &= !memcmp(kv_k(&back, l, 1), kv_k(&kv, l, 2), 5 * (size_t)kv.kv_dim * sizeof(float)) &&
			!memcmp(kv_v(&back, l, 1), kv_v(&kv, l, 2), 5 * (size_t)kv.kv_dim * sizeof(float));
	ok(same, "read: K and V of every layer exactly as written (f32)");
	ok(!memcmp(back.tok + 1, tok + 2, 5 * sizeof *tok) && !memcmp(back.pos + 1, pos + 2, 5 * sizeof *pos),
	   "read: token ids and positions");
	ok(rh->n_logits == m->hp.n_vocab && !memcmp(rh->logits, ws.logits, (size_t)rh->n_logits * sizeof(float)),
	   "read: the logits");
	kvc_reader_free(r);

	back.n = 4; /* 4 + 5 > 8 */
	rc = kvc_reader_open_file(&r, p);
	if (rc == KB_OK)
		rc = kvc_reader_next_header(r, &rh);
	rc = rc ? rc : kvfile_read(r, rh, m, &back);
	ok(rc == KB_ERR_ARG && back.n == 4, "read: no room is KB_ERR_ARG, nothing changed (%s)", kb_error());
	kvc_reader_free(r);
	rc = kvc_reader_open_file(&r, p);
	if (rc == KB_OK)
		rc = kvc_reader_next_header(r, &rh);
	struct kv_cache ko;
	ASSERT(kv_cache_init(&ko, other, 8) == KB_OK);
	rc = rc ? rc : kvfile_read(r, rh, other, &ko);
	ok(rc == KB_ERR_MISMATCH, "read: another model's cache is KB_ERR_MISMATCH (%s)", kb_error());
	kvc_reader_free(r);
	kv_cache_free(&ko);
	kv_cache_free(&back);
	model_ws_free(&ws);
	kv_cache_free(&kv);
}

/* The layer callback of a write that a SIGTERM stops after layer 0. */
struct stopper {
	const struct kv_cache *kv;
};
static int layer_then_die(void *ctx, int l, const float **k, const float **v, size_t *stride)
{
	const struct stopper *s = ctx;
	if (l == 1)
		raise(SIGTERM);
	*k = kv_k(s->kv, l, 0), *v = kv_v(s->kv, l, 0), *stride = (size_t)s->kv->kv_dim;
	return KB_OK;
}

static void test_signals(const struct model *m)
{
	struct kv_cache kv;
	ASSERT(kv_cache_init(&kv, m, 4) == KB_OK);
	for (int i = 0; i < 4; i++)
		kv.tok[i] = 300 + i, kv.pos[i] = i;
	kv.n = 4;
	char p[4400];
	snprintf(p, sizeof p, "%s/killed.kvc", dir);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		struct kvc_header h;
		struct stopper s = { &kv };
		kvfile_header(&h, m, &kv, 0, 4, NULL, KVC_F16, "test", 0, NULL);
		int rc = kvc_write_file_cb(p, &h, layer_then_die, &s);
		_exit(rc ? 3 : 4); /* not reached: SIGTERM came first */
	}
	int ws;
	waitpid(pid, &ws, 0);
	ok(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGTERM, "SIGTERM in the middle of a write ends the writer by it");
	ok(count_temps("killed.kvc") == 0 && !exists("killed.kvc"), "... no temporary file left, no target (%d)",
	   count_temps("killed.kvc"));

	/* a tool that gives up half-way (cli_die: exit 1) leaves nothing either */
	snprintf(p, sizeof p, "%s/gaveup.jsonl", dir);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct kb_out o;
		if (kb_out_open(&o, p) || fputs("half a record", o.f) < 0)
			_exit(3);
		exit(1);
	}
	waitpid(pid, &ws, 0);
	ok(WIFEXITED(ws) && WEXITSTATUS(ws) == 1 && count_temps("gaveup.jsonl") == 0 && !exists("gaveup.jsonl"),
	   "exit() with an output open: its temporary file is removed");

	/* a handler of the program's own is left alone */
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		signal(SIGTERM, SIG_IGN);
		struct kb_out o;
		if (kb_out_open(&o, p))
			_exit(3);
		raise(SIGTERM); /* ignored */
		_exit(kb_out_commit(&o) == KB_OK ? 0 : 4);
	}
	waitpid(pid, &ws, 0);
	ok(WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && exists("gaveup.jsonl"), "an ignored SIGTERM stays ignored");
	/* a store's object being written (prefill into the store) */
	char st_dir[4400];
	snprintf(st_dir, sizeof st_dir, "%s/st", dir);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct store *st;
		struct store_put put;
		char key[STORE_KEY_HEX + 1];
		memset(key, 'a', STORE_KEY_HEX);
		key[STORE_KEY_HEX] = 0;
		if (store_open(&st, st_dir) || store_put_begin(st, key, &put))
			_exit(3);
		raise(SIGTERM);
		_exit(4);
	}
	waitpid(pid, &ws, 0);
	char cmd[4600];
	snprintf(cmd, sizeof cmd, "test -z \"$(find '%s' -name '.tmp-*')\"", st_dir);
	ok(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGTERM && system(cmd) == 0,
	   "SIGTERM while a store object is written: its temporary file is removed");
	kv_cache_free(&kv);
}

static void touch(const char *name)
{
	char p[4400];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	ASSERT(f && fputs("half", f) >= 0 && fclose(f) == 0);
}

static void test_leftovers(void)
{
	char p[4400], *tmp;
	snprintf(p, sizeof p, "%s/o.jsonl", dir);
	int fd = kb_open_temp(p, &tmp);
	ASSERT(fd >= 0);
	close(fd);
	/* ".o.jsonl.PID.HOST.N.tmp": this host's tag from a real one */
	char host[9];
	const char *b = strrchr(tmp, '/') + 1;
	ok(sscanf(b, ".o.jsonl.%*d.%8[0-9a-f].%*u.tmp", host) == 1 && strlen(host) == 8,
	   "temporary files are named .NAME.PID.HOST.N.tmp (%s)", b);
	unlink(tmp);
	kb_temp_free(tmp);
	pid_t dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0); /* its pid names no process now */
	char name[256];
	snprintf(name, sizeof name, ".o.jsonl.%ld.%s.0.tmp", (long)dead, host);
	touch(name);
	char live[256], foreign[256], other[256];
	snprintf(live, sizeof live, ".o.jsonl.%ld.%s.0.tmp", (long)getppid(), host);
	touch(live);
	snprintf(foreign, sizeof foreign, ".o.jsonl.%ld.%s.0.tmp", (long)dead, strcmp(host, "00000000") ? "00000000" : "11111111");
	touch(foreign);
	snprintf(other, sizeof other, ".p.jsonl.%ld.%s.0.tmp", (long)dead, host);
	touch(other);
	struct kb_out o;
	ok(kb_out_open(&o, p) == KB_OK && fputs("{}\n", o.f) >= 0 && kb_out_commit(&o) == KB_OK, "o.jsonl written again");
	ok(!exists(name), "a dead process's leftover is removed");
	ok(exists(live), "a live process's temporary file is kept");
	ok(exists(foreign), "another host's is kept (its pid means nothing here)");
	ok(exists(other), "another file's is kept");
	ok(count_temps("o.jsonl") == 2, "and the write left none of its own");
}

int main(void)
{
	snprintf(dir, sizeof dir, "%s", tap_tmpdir());
	struct model *m = tiny("tiny-llama", "m.gguf"), *other = tiny("tiny-qwen2", "q.gguf");
	test_roundtrip(m, other);
	test_signals(m);
	test_leftovers();
	model_free(other);
	model_free(m);
	return done_testing();
}
