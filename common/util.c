/* util.c — see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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

int kb_grow(void *pv, size_t *cap, size_t n, size_t elem, size_t first)
{
	if (n < *cap)
		return KB_OK;
	void *old, *nv;
	memcpy(&old, pv, sizeof old); /* pv is a T **: copied, not type-punned */
	size_t nc = *cap ? 2 * *cap : first;
	if (!(nv = kb_realloc_array(old, nc, elem)))
		return KB_ERR_NOMEM;
	memcpy(pv, &nv, sizeof nv);
	*cap = nc;
	return KB_OK;
}

int kb_open_temp(const char *path, char **tmp)
{
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
	size_t n = strlen(path) + 48;
	char *p = kb_malloc(n);
	if (!p)
		return -1;
	static unsigned counter;
	for (int tries = 0; tries < 100; tries++) {
		unsigned c = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
		snprintf(p, n, "%.*s.%s.%ld.%u.tmp", (int)dirlen, path, path + dirlen, (long)getpid(), c);
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0) {
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

void kb_set_threads(int n)
{
#ifdef _OPENMP
	if (n <= 0) {
		const char *env = getenv("OMP_NUM_THREADS");
		if (env && *env)
			return; /* the user's choice stands */
		n = omp_get_num_procs();
	}
	omp_set_num_threads(n);
#else
	(void)n;
#endif
}

int kb_get_threads(void)
{
#ifdef _OPENMP
	return omp_get_max_threads();
#else
	return 1;
#endif
}
