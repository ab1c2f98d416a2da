/* kbio.c — see kbio.h. */
#include "kbio.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct kbio {
	int fd;           /* owned unless stdin */
	char *path;       /* owned; NULL for stdin */
	uint8_t *peek;    /* owned: the first n_peek bytes of the input, read already */
	size_t n_peek;
	bool eof;         /* read() returned 0 */
};

static bool stdin_used;

static bool is_stdin_name(const char *path)
{
	return !path || strcmp(path, "-") == 0;
}

/* Claim stdin: KB_OK the first time, KB_ERR_ARG after. */
static int claim_stdin(void)
{
	if (__atomic_exchange_n(&stdin_used, true, __ATOMIC_RELAXED))
		return kb_fail(KB_ERR_ARG, "'-': stdin can be read only once");
	return KB_OK;
}

/* Open path read-only, refusing a directory; the descriptor or -1 with a message. */
static int open_input(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0) {
		kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		close(fd);
		kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(EISDIR));
		return -1;
	}
	return fd;
}

int kbio_open(struct kbio **out, const char *path)
{
	int fd = STDIN_FILENO, rc;
	if (is_stdin_name(path)) {
		if ((rc = claim_stdin()))
			return rc;
	} else if ((fd = open_input(path)) < 0) {
		return KB_ERR_IO;
	}
	struct kbio *io = kb_calloc(1, sizeof *io);
	if (io && !is_stdin_name(path) && !(io->path = kb_strndup(path, strlen(path)))) {
		free(io);
		io = NULL;
	}
	if (!io) {
		if (fd != STDIN_FILENO)
			close(fd);
		return KB_ERR_NOMEM;
	}
	io->fd = fd;
	*out = io;
	return KB_OK;
}

void kbio_close(struct kbio *io)
{
	if (!io)
		return;
	if (io->path)
		close(io->fd);
	free(io->path);
	free(io->peek);
	free(io);
}

const char *kbio_name(const struct kbio *io)
{
	return io->path ? io->path : "<stdin>";
}

const char *kbio_path(const struct kbio *io)
{
	return io->path;
}

/* Read into buf until n bytes or the end; the count, or -1 with a message. */
static ssize_t read_some(struct kbio *io, uint8_t *buf, size_t n)
{
	size_t got = 0;
	while (got < n && !io->eof) {
		ssize_t k = read(io->fd, buf + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			kb_fail(KB_ERR_IO, "'%s': %s", kbio_name(io), strerror(errno));
			return -1;
		}
		if (k == 0)
			io->eof = true;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

int kbio_peek(struct kbio *io, size_t n, const void **buf, size_t *got)
{
	if (n > io->n_peek && !io->eof) {
		uint8_t *p = kb_realloc_array(io->peek, n, 1);
		if (!p)
			return KB_ERR_NOMEM;
		io->peek = p;
		ssize_t k = read_some(io, p + io->n_peek, n - io->n_peek);
		if (k < 0)
			return KB_ERR_IO;
		io->n_peek += (size_t)k;
	}
	*buf = io->peek;
	*got = io->n_peek < n ? io->n_peek : n;
	return KB_OK;
}

int kbio_sniff(struct kbio *io, enum kbio_type *type)
{
	const void *p;
	size_t n;
	int rc = kbio_peek(io, KVC_MAGIC_LEN > 4 ? KVC_MAGIC_LEN : 4, &p, &n);
	if (rc)
		return rc;
	if (n == 0)
		*type = KBIO_EMPTY;
	else if (kvc_sniff(p, n))
		*type = KBIO_KVC;
	else if (n >= 4 && memcmp(p, "GGUF", 4) == 0)
		*type = KBIO_GGUF;
	else
		*type = KBIO_OTHER;
	return KB_OK;
}

int kbio_read_all(struct kbio *io, char **data, size_t *len)
{
	size_t cap = io->n_peek + (1 << 16), n = io->n_peek;
	char *buf = kb_malloc(cap);
	if (!buf)
		return KB_ERR_NOMEM;
	if (n)
		memcpy(buf, io->peek, n);
	while (!io->eof) {
		if (cap - n < 2) {
			char *nb = kb_realloc_array(buf, cap, 2);
			if (!nb) {
				free(buf);
				return KB_ERR_NOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t k = read_some(io, (uint8_t *)buf + n, cap - n - 1);
		if (k < 0) {
			free(buf);
			return KB_ERR_IO;
		}
		n += (size_t)k;
	}
	buf[n] = '\0';
	free(io->peek); /* consumed: what follows is the end */
	io->peek = NULL;
	io->n_peek = 0;
	*data = buf;
	*len = n;
	return KB_OK;
}

int kbio_kvc_reader(struct kbio *io, struct kvc_reader **r)
{
	int rc = kvc_reader_open_fd_prefix(r, io->fd, io->peek, io->n_peek, kbio_name(io));
	if (rc == KB_OK) {
		free(io->peek); /* copied by the reader */
		io->peek = NULL;
		io->n_peek = 0;
	}
	return rc;
}

int kbio_read_file(const char *path, char **data, size_t *len)
{
	struct kbio *io;
	int rc = kbio_open(&io, path);
	if (rc == KB_OK) {
		rc = kbio_read_all(io, data, len);
		kbio_close(io);
	}
	return rc;
}

FILE *kbio_fopen(const char *path)
{
	if (is_stdin_name(path))
		return claim_stdin() ? NULL : stdin;
	int fd = open_input(path);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "r");
	if (!f) {
		kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
		close(fd);
	}
	return f;
}

void kbio_fclose(FILE *f)
{
	if (f && f != stdin)
		fclose(f);
}
