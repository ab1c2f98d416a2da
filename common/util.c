/* util.c — see util.h. */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char errbuf[512];

void kb_assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	abort();
}

int kb_fail(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	return status;
}

const char *kb_error(void)
{
	return errbuf;
}

void *kb_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		kb_fail(KB_ERR_NOMEM, "out of memory (%zu bytes)", n);
	return p;
}

void *kb_calloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (!p)
		kb_fail(KB_ERR_NOMEM, "out of memory (%zu x %zu bytes)", count, size);
	return p;
}

void *kb_realloc_array(void *p, size_t count, size_t size)
{
	size_t n;
	if (kb_mul_size(count, size, &n)) {
		kb_fail(KB_ERR_NOMEM, "allocation size overflows (%zu x %zu)", count, size);
		return NULL;
	}
	void *q = realloc(p, n ? n : 1);
	if (!q)
		kb_fail(KB_ERR_NOMEM, "out of memory (%zu bytes)", n);
	return q;
}

void *kb_aligned_alloc(size_t align, size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, align, n ? n : 1)) {
		kb_fail(KB_ERR_NOMEM, "out of memory (%zu bytes)", n);
		return NULL;
	}
	return p;
}

int kb_read_file(const char *path, char **data, size_t *len)
{
	int stdin_ = path == NULL || strcmp(path, "-") == 0;
	FILE *f = stdin_ ? stdin : fopen(path, "rb");
	if (!f)
		return kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
	size_t cap = 1 << 16, n = 0;
	char *buf = kb_malloc(cap);
	if (!buf)
		goto fail;
	for (;;) {
		if (cap - n < 2) {
			char *nb = kb_realloc_array(buf, cap, 2);
			if (!nb)
				goto fail;
			buf = nb;
			cap *= 2;
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0) {
			if (ferror(f)) {
				kb_fail(KB_ERR_IO, "'%s': %s", stdin_ ? "<stdin>" : path, strerror(errno));
				goto fail;
			}
			break;
		}
	}
	buf[n] = '\0';
	if (!stdin_)
		fclose(f);
	*data = buf;
	*len = n;
	return KB_OK;
fail:
	free(buf);
	if (!stdin_)
		fclose(f);
	return KB_ERR_IO;
}

char *kb_strndup(const char *s, size_t n)
{
	char *r = kb_malloc(n + 1);
	if (r) {
		memcpy(r, s, n);
		r[n] = '\0';
	}
	return r;
}

char *kb_asprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		kb_fail(KB_ERR_NOMEM, "out of memory");
		return NULL;
	}
	return s;
}

int kb_grow(void *pv, size_t *cap, size_t n, size_t elem, size_t first)
{
	if (n < *cap)
		return KB_OK;
	void *old, *nv;
	memcpy(&old, pv, sizeof old); /* pv is a T **: copied, not type-punned */
	size_t nc = *cap ? *cap : first ? first : 1;
	while (nc <= n) /* doubling until element n fits, whatever n is */
		if (kb_mul_size(nc, 2, &nc))
			return KB_ERR_NOMEM;
	if (!(nv = kb_realloc_array(old, nc, elem)))
		return KB_ERR_NOMEM;
	memcpy(pv, &nv, sizeof nv);
	*cap = nc;
	return KB_OK;
}

/* ---- temporary files: the registry signals clean up ---- */

#define TEMP_SLOTS 64
static const char *temp_slot[TEMP_SLOTS]; /* registered paths; read by the handler */
static int temp_handlers;                 /* installed once */

/* SIGINT, SIGTERM, SIGHUP: remove what is registered (unlink is
 * async-signal-safe), then die of the signal (SA_RESETHAND restored the
 * default action, SA_NODEFER lets it through at once). */
static void temp_on_signal(int sig)
{
	int saved = errno;
	for (int i = 0; i < TEMP_SLOTS; i++) {
		const char *p = __atomic_load_n(&temp_slot[i], __ATOMIC_ACQUIRE);
		if (p)
			unlink(p);
	}
	raise(sig);
	errno = saved;
}

/* exit() with temporary files still registered (a tool gave up): remove them. */
static void temp_at_exit(void)
{
	for (int i = 0; i < TEMP_SLOTS; i++) {
		const char *p = __atomic_exchange_n(&temp_slot[i], NULL, __ATOMIC_ACQ_REL);
		if (p)
			unlink(p);
	}
}

static void temp_install_handlers(void)
{
	if (__atomic_exchange_n(&temp_handlers, 1, __ATOMIC_ACQ_REL))
		return;
	atexit(temp_at_exit);
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
		struct sigaction old, sa = { .sa_handler = temp_on_signal, .sa_flags = SA_RESETHAND | SA_NODEFER };
		sigemptyset(&sa.sa_mask);
		/* a signal the program ignores (nohup) or handles itself stays its own */
		if (sigaction(sigs[i], NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
		    old.sa_handler == SIG_DFL)
			sigaction(sigs[i], &sa, NULL);
	}
}

int kb_temp_register(const char *tmp)
{
	temp_install_handlers();
	for (int i = 0; i < TEMP_SLOTS; i++) {
		const char *none = NULL;
		if (__atomic_compare_exchange_n(&temp_slot[i], &none, tmp, false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED))
			return KB_OK;
	}
	return kb_fail(KB_ERR_NOMEM, "'%s': more than %d temporary files at once", tmp, TEMP_SLOTS);
}

void kb_temp_forget(const char *tmp)
{
	for (int i = 0; tmp && i < TEMP_SLOTS; i++) {
		const char *p = tmp;
		if (__atomic_compare_exchange_n(&temp_slot[i], &p, NULL, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			return;
	}
}

void kb_temp_free(char *tmp)
{
	kb_temp_forget(tmp);
	free(tmp);
}

/* 8 hex digits naming this host in temporary files (FNV-1a of its name). */
static const char *host_tag(void)
{
	static char tag[9];
	if (!tag[0]) {
		char name[256] = "";
		gethostname(name, sizeof name - 1);
		uint32_t h = 2166136261u;
		for (const char *c = name; *c; c++)
			h = (h ^ (uint8_t)*c) * 16777619u;
		snprintf(tag, sizeof tag, "%08x", (unsigned)h);
	}
	return tag;
}

/* Remove ".NAME.PID.HOST.N.tmp" files in dir left by dead processes of this
 * host (best effort: what cannot be parsed or removed is left alone). */
static void remove_leftovers(const char *dir, const char *name)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	size_t nl = strlen(name);
	const char *host = host_tag();
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *f = e->d_name;
		size_t fl = strlen(f);
		if (fl < nl + 6 || f[0] != '.' || strncmp(f + 1, name, nl) || f[nl + 1] != '.' ||
		    strcmp(f + fl - 4, ".tmp"))
			continue;
		char *end;
		errno = 0;
		long pid = strtol(f + nl + 2, &end, 10);
		if (errno || end == f + nl + 2 || pid <= 0 || *end != '.' || strncmp(end + 1, host, 8) ||
		    end[9] != '.' || pid == (long)getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* alive (or not ours to know) */
		unlinkat(dirfd(d), f, 0);
	}
	closedir(d);
}

int kb_open_temp(const char *path, char **tmp)
{
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
	size_t n = strlen(path) + 64;
	char *p = kb_malloc(n);
	if (!p)
		return -1;
	snprintf(p, n, "%.*s", dirlen ? (int)dirlen : 1, dirlen ? path : ".");
	remove_leftovers(p, path + dirlen);
	static unsigned counter;
	for (int tries = 0; tries < 100; tries++) {
		unsigned c = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
		snprintf(p, n, "%.*s.%s.%ld.%s.%u.tmp", (int)dirlen, path, path + dirlen, (long)getpid(), host_tag(),
			 c);
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0) {
			if (kb_temp_register(p)) { /* full: the file works, signals just miss it */
			}
			*tmp = p;
			return fd;
		}
		if (errno != EEXIST)
			break;
	}
	kb_fail(KB_ERR_IO, "'%s': cannot create a temporary file: %s", path, strerror(errno));
	free(p);
	return -1;
}

/* ---- atomic output through stdio ---- */

int kb_out_open(struct kb_out *o, const char *path)
{
	*o = (struct kb_out){ 0 };
	struct stat sb;
	if (strcmp(path, "-") == 0) {
		o->f = stdout;
		return KB_OK;
	}
	if (!(o->path = kb_strndup(path, strlen(path))))
		return KB_ERR_NOMEM;
	int fd;
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) { /* /dev/null, a FIFO: in place */
		if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
			kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
			goto fail;
		}
	} else if ((fd = kb_open_temp(path, &o->tmp)) < 0) {
		goto fail;
	}
	if (!(o->f = fdopen(fd, "w"))) {
		kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
		close(fd);
		goto fail;
	}
	return KB_OK;
fail:
	kb_out_abort(o);
	return KB_ERR_IO;
}

int kb_out_commit(struct kb_out *o)
{
	const char *shown = o->path ? o->path : "<stdout>";
	int bad = fflush(o->f) != 0 || ferror(o->f), err = errno;
	if (o->f == stdout) {
		o->f = NULL;
		return bad ? kb_fail(KB_ERR_IO, "'%s': %s", shown, strerror(err ? err : EIO)) : KB_OK;
	}
	if (!bad && o->tmp && fsync(fileno(o->f)) != 0)
		bad = 1, err = errno;
	if (fclose(o->f) != 0 && !bad)
		bad = 1, err = errno;
	o->f = NULL;
	if (!bad && o->tmp && rename(o->tmp, o->path) != 0)
		bad = 1, err = errno;
	if (bad) {
		kb_fail(KB_ERR_IO, "'%s': %s", shown, strerror(err ? err : EIO));
		kb_out_abort(o);
		return KB_ERR_IO;
	}
	if (o->tmp)
		kb_fsync_parent(o->path);
	kb_temp_free(o->tmp);
	free(o->path);
	*o = (struct kb_out){ 0 };
	return KB_OK;
}

void kb_out_abort(struct kb_out *o)
{
	if (o->f && o->f != stdout)
		fclose(o->f);
	if (o->tmp)
		unlink(o->tmp);
	kb_temp_free(o->tmp);
	free(o->path);
	*o = (struct kb_out){ 0 };
}

void kb_fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else
		snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd); /* best effort: the rename is durable once the directory is */
		close(fd);
	}
}

int kb_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return kb_fail(KB_ERR_IO, "write: %s", strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
	return KB_OK;
}

double kb_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
