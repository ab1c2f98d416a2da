/* pdftext.c — see pdftext.h. */
#include "pdftext.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* A new temporary file in $TMPDIR (else /tmp): its descriptor, and its path
 * in *path (malloc()ed) when path is given, else it is unlinked at once. -1
 * after kb_fail. */
static int temp_file(const char *name, char **path)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	size_t n = strlen(dir) + 32;
	char *p = kb_malloc(n);
	if (!p)
		return kb_fail(KB_ERR_NOMEM, "'%s': out of memory", name), -1;
	snprintf(p, n, "%s/kvblend-pdf.XXXXXX", dir);
	int fd = mkstemp(p);
	if (fd < 0) {
		kb_fail(KB_ERR_IO, "'%s': a temporary file in '%s': %s", name, dir, strerror(errno));
		free(p);
		return -1;
	}
	if (path && kb_temp_register(p) == KB_OK) {
		*path = p;
		return fd;
	}
	unlink(p);
	if (path) { /* cannot be removed by a signal: refuse rather than leave it behind */
		close(fd);
		kb_fail(KB_ERR_NOMEM, "'%s': too many temporary files", name);
		free(p);
		return -1;
	}
	free(p);
	return fd;
}

/* All of fd from its start, NUL-terminated, in *out. */
static int read_back(const char *name, int fd, char **out, size_t *len)
{
	struct stat st;
	if (fstat(fd, &st) || lseek(fd, 0, SEEK_SET) < 0)
		return kb_fail(KB_ERR_IO, "'%s': pdftotext's output: %s", name, strerror(errno));
	size_t n = (size_t)st.st_size, got = 0;
	char *v = kb_malloc(n + 1);
	if (!v)
		return kb_fail(KB_ERR_NOMEM, "'%s': out of memory", name);
	while (got < n) {
		ssize_t r = read(fd, v + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(v);
			return kb_fail(KB_ERR_IO, "'%s': pdftotext's output: %s", name, r ? strerror(errno) : "short read");
		}
		got += (size_t)r;
	}
	v[n] = '\0';
	*out = v;
	*len = n;
	return KB_OK;
}

/* Run prog on the file pdf (of pdf_bytes), its standard output to out_fd and
 * its messages to err_fd; its exit status in *status (-1: killed by a
 * signal). One that runs too long is killed, and that is an error. */
static int run(const char *name, const char *prog, const char *pdf, size_t pdf_bytes, int out_fd, int err_fd,
	       int *status)
{
	char *argv[] = { (char *)prog, "-enc", "UTF-8", "-eol", "unix", (char *)pdf, "-", NULL };
	posix_spawn_file_actions_t fa;
	if (posix_spawn_file_actions_init(&fa))
		return kb_fail(KB_ERR_NOMEM, "'%s': out of memory", name);
	int e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (!e)
		e = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	if (!e)
		e = posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
	pid_t pid;
	if (!e)
		e = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (e)
		return kb_fail(KB_ERR_IO, "'%s': cannot run %s (install poppler-utils): %s", name, prog, strerror(e));
	/* a PDF made to make it loop must not hang chunk: a minute (or
	 * $KVBLEND_PDF_TIMEOUT seconds), and a second more per MiB of PDF */
	const char *env = getenv("KVBLEND_PDF_TIMEOUT");
	const double base = env && atof(env) > 0 ? atof(env) : 60;
	const double limit = base + (double)pdf_bytes / (1 << 20);
	const double t0 = kb_now();
	int ws;
	long wait_us = 1000;
	for (;;) {
		pid_t r = waitpid(pid, &ws, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return kb_fail(KB_ERR_IO, "'%s': waiting for %s: %s", name, prog, strerror(errno));
		if (kb_now() - t0 > limit) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
				;
			return kb_fail(KB_ERR_FORMAT, "'%s': %s ran past %.0f s and was stopped", name, prog, limit);
		}
		usleep((useconds_t)wait_us);
		wait_us = wait_us < 50000 ? wait_us * 2 : 50000;
	}
	*status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
	return KB_OK;
}

/* The first line of pdftotext's messages, in msg. */
static void first_line(int fd, char *msg, size_t size)
{
	msg[0] = '\0';
	if (lseek(fd, 0, SEEK_SET) < 0)
		return;
	ssize_t r = read(fd, msg, size - 1);
	msg[r > 0 ? r : 0] = '\0';
	msg[strcspn(msg, "\r\n")] = '\0';
}

/* pdftotext's pages (each ended by a form feed) as paragraphs: each page's
 * text without its trailing white space, a blank line after it. */
static int pages(const char *name, const char *raw, size_t n, char **text, size_t *tlen, size_t **start,
		 size_t *n_pages)
{
	size_t np = 0;
	for (size_t i = 0; i < n; i++)
		np += raw[i] == '\f';
	if (n && raw[n - 1] != '\f')
		np++; /* a last page without its form feed */
	if (!np)
		np = 1;
	char *t = kb_malloc(n + 2 * np + 1);
	size_t *ps = kb_malloc(np * sizeof *ps);
	if (!t || !ps) {
		free(t);
		free(ps);
		return kb_fail(KB_ERR_NOMEM, "'%s': out of memory", name);
	}
	size_t k = 0, p = 0, i = 0;
	while (p < np) {
		size_t e = i;
		while (e < n && raw[e] != '\f')
			e++;
		ps[p++] = k;
		size_t m = e;
		while (m > i && (raw[m - 1] == ' ' || raw[m - 1] == '\n' || raw[m - 1] == '\t' || raw[m - 1] == '\r'))
			m--;
		for (size_t j = i; j < m; j++)
			if (raw[j]) /* records hold no NUL */
				t[k++] = raw[j];
		if (m > i) {
			t[k++] = '\n';
			if (p < np)
				t[k++] = '\n';
		}
		i = e < n ? e + 1 : n;
	}
	t[k] = '\0';
	*text = t, *tlen = k, *start = ps, *n_pages = np;
	return KB_OK;
}

/* A PDF ends with %%EOF (and a line end): without it, the file was cut short. */
static bool has_eof(const char *data, size_t len)
{
	size_t tail = len < 1024 ? len : 1024;
	return memmem(data + len - tail, tail, "%%EOF", 5) != NULL;
}

int pdf_to_text(const char *name, const char *data, size_t len, const char *prog, char **text, size_t *tlen,
		size_t **page_start, size_t *n_pages)
{
	*text = NULL, *tlen = 0, *page_start = NULL, *n_pages = 0;
	if (!prog)
		prog = "pdftotext";
	if (!has_eof(data, len))
		return kb_fail(KB_ERR_FORMAT, "'%s': a truncated PDF (no %%%%EOF at its end)", name);
	char *in_path = NULL;
	int in_fd = temp_file(name, &in_path), out_fd = -1, err_fd = -1, rc = KB_OK;
	if (in_fd < 0)
		return KB_ERR_IO;
	if ((rc = kb_write_all(in_fd, data, len)))
		rc = kb_fail(KB_ERR_IO, "'%s': a temporary copy: %s", name, kb_error());
	if (!rc && ((out_fd = temp_file(name, NULL)) < 0 || (err_fd = temp_file(name, NULL)) < 0))
		rc = KB_ERR_IO;
	close(in_fd);
	int status = 0;
	if (!rc)
		rc = run(name, prog, in_path, len, out_fd, err_fd, &status);
	unlink(in_path);
	kb_temp_forget(in_path);
	free(in_path);
	if (!rc && status != 0) {
		char msg[256];
		first_line(err_fd, msg, sizeof msg);
		if (status < 0)
			rc = kb_fail(KB_ERR_FORMAT, "'%s': %s was killed by a signal", name, prog);
		else
			rc = kb_fail(KB_ERR_FORMAT, "'%s': %s: %s (exit status %d)", name, prog,
				     msg[0] ? msg : "cannot read the PDF", status);
	}
	char *raw = NULL;
	size_t n = 0;
	if (!rc)
		rc = read_back(name, out_fd, &raw, &n);
	if (!rc)
		rc = pages(name, raw, n, text, tlen, page_start, n_pages);
	free(raw);
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	return rc;
}
