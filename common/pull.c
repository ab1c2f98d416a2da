/* pull.c — see pull.h. */
#include "pull.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "remote.h"

static void (*default_progress)(void *ctx, const char *name, uint64_t done, uint64_t total);
static void *default_ctx;

void pull_set_progress(void (*fn)(void *ctx, const char *name, uint64_t done, uint64_t total), void *ctx)
{
	default_progress = fn;
	default_ctx = ctx;
}

bool pull_is_url(const char *s)
{
	return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

int pull_dir(char **dir)
{
	const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	int n = -1;
	*dir = NULL;
	if (x && *x)
		n = asprintf(dir, "%s/kvblend/models", x);
	else if (home && *home)
		n = asprintf(dir, "%s/.cache/kvblend/models", home);
	else
		return kb_fail(KB_ERR_ARG, "no folder for models: set $XDG_CACHE_HOME or $HOME");
	if (n < 0) {
		*dir = NULL;
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	}
	return KB_OK;
}

int pull_path(const char *url, char **path)
{
	char *dir;
	int rc = pull_dir(&dir);
	if (rc)
		return rc;
	/* the last part of the path, without query or fragment */
	size_t end = strcspn(url, "?#");
	const char *host = strstr(url, "://");
	const char *start = host ? host + 3 : url;
	const char *slash = NULL;
	for (const char *p = start; p < url + end; p++)
		if (*p == '/')
			slash = p;
	const char *base = slash ? slash + 1 : url + end;
	size_t nb = (size_t)(url + end - base);
	if (nb > 120)
		nb = 120;
	char name[128];
	for (size_t i = 0; i < nb; i++) {
		char c = base[i];
		name[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
				  c == '_' || c == '-' ? c : '_';
	}
	name[nb] = '\0';
	if (nb == 0 || name[0] == '.')
		snprintf(name, sizeof name, "model.gguf");
	uint8_t d[32];
	char hex[65];
	sha256(url, strlen(url), d);
	hash_hex(d, 32, hex);
	int n = asprintf(path, "%s/%.12s-%s", dir, hex, name);
	free(dir);
	if (n < 0) {
		*path = NULL;
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	}
	return KB_OK;
}

static int mkdirs(const char *dir)
{
	char *p = strdup(dir);
	if (!p)
		return kb_fail(KB_ERR_NOMEM, "out of memory");
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0777) < 0 && errno != EEXIST) {
			int rc = kb_fail(KB_ERR_IO, "'%s': cannot create the folder: %s", p, strerror(errno));
			free(p);
			return rc;
		}
		*s = '/';
	}
	int rc = mkdir(p, 0777) < 0 && errno != EEXIST
		? kb_fail(KB_ERR_IO, "'%s': cannot create the folder: %s", p, strerror(errno)) : KB_OK;
	free(p);
	return rc;
}

/* The SHA-256 of the file in fd, in hex. */
static int file_sha256(int fd, const char *name, char hex[65])
{
	struct sha256 s;
	sha256_init(&s);
	static char buf[1 << 16];
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof buf, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kb_fail(KB_ERR_IO, "'%s': %s", name, strerror(errno));
		if (n == 0)
			break;
		sha256_update(&s, buf, (size_t)n);
		off += n;
	}
	uint8_t d[32];
	sha256_final(&s, d);
	hash_hex(d, 32, hex);
	return KB_OK;
}

static int check_sha(int fd, const char *name, const char *want)
{
	char got[65];
	int rc = file_sha256(fd, name, got);
	if (rc)
		return rc;
	if (strcasecmp(got, want) != 0)
		return kb_fail(KB_ERR_MISMATCH, "'%s': its SHA-256 is %s, not the %s asked for", name, got, want);
	return KB_OK;
}

static bool valid_sha(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f') || (s[n] >= 'A' && s[n] <= 'F')))
			return false;
	return n == 64;
}

struct meter {
	const struct pull_opts *o;
	const char *name;
	void (*fn)(void *ctx, const char *name, uint64_t done, uint64_t total);
	void *ctx;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct meter *m = ctx;
	m->fn(m->ctx, m->name, done, total);
}

/* With the .part locked: download the rest, check it, rename it into place. */
static int download_locked(const char *url, const char *shown, const struct pull_opts *o, int fd, const char *part,
			   const char *path)
{
	struct stat sb;
	if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
		return KB_OK; /* another process finished it while we waited */
	if (fstat(fd, &sb) < 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", part, strerror(errno));
	uint64_t have = (uint64_t)sb.st_size, total = 0;
	struct meter m = { .o = o, .name = strrchr(path, '/') + 1 };
	m.fn = o && o->progress ? o->progress : default_progress;
	m.ctx = o && o->progress ? o->ctx : default_ctx;
	int rc = remote_download(url, fd, &have, &total, NULL, m.fn ? on_progress : NULL, &m);
	if (rc) {
		char why[700];
		snprintf(why, sizeof why, "%s", kb_error());
		if (rc == KB_EOF)
			return kb_fail(KB_ERR_IO, "'%s': no such file (HTTP 404)", shown);
		if (fstat(fd, &sb) == 0 && sb.st_size > 0)
			return kb_fail(rc, "%s; %lld bytes kept in '%s': run it again to resume", why, (long long)sb.st_size,
				       part);
		return kb_fail(rc, "%s", why);
	}
	char magic[4] = "";
	if (pread(fd, magic, 4, 0) != 4 || memcmp(magic, "GGUF", 4) != 0) {
		unlink(part);
		return kb_fail(KB_ERR_FORMAT, "'%s': not a GGUF model (no GGUF magic at its start; the download is removed)",
			       shown);
	}
	if (o && o->sha256 && (rc = check_sha(fd, shown, o->sha256))) {
		char why[700];
		snprintf(why, sizeof why, "%s", kb_error());
		unlink(part);
		return kb_fail(rc, "%s (the download is removed)", why);
	}
	if (fsync(fd) < 0)
		return kb_fail(KB_ERR_IO, "'%s': %s", part, strerror(errno));
	if (rename(part, path) < 0)
		return kb_fail(KB_ERR_IO, "'%s': rename: %s", path, strerror(errno));
	kb_fsync_parent(path);
	return KB_OK;
}

int pull_model(const char *url, const struct pull_opts *o, char **out)
{
	*out = NULL;
	char shown[1024];
	remote_url_display(url, shown, sizeof shown);
	if (!pull_is_url(url))
		return kb_fail(KB_ERR_ARG, "'%s': a model's URL is http:// or https://", shown);
	if (o && o->sha256 && !valid_sha(o->sha256))
		return kb_fail(KB_ERR_ARG, "'%s' is not a SHA-256 (64 hex digits)", o->sha256);
	char *path, *part = NULL;
	int rc = pull_path(url, &path);
	if (rc)
		return rc;
	struct stat sb;
	int fd = -1;
	if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
		if (o && o->sha256) {
			if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
				rc = kb_fail(KB_ERR_IO, "'%s': %s", path, strerror(errno));
			else
				rc = check_sha(fd, path, o->sha256);
		}
		goto out;
	}
	char *dir = strdup(path);
	if (!dir) {
		rc = kb_fail(KB_ERR_NOMEM, "out of memory");
		goto out;
	}
	*strrchr(dir, '/') = '\0';
	rc = mkdirs(dir);
	free(dir);
	if (rc)
		goto out;
	if (asprintf(&part, "%s.part", path) < 0) {
		part = NULL;
		rc = kb_fail(KB_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0666)) < 0) {
		rc = kb_fail(KB_ERR_IO, "'%s': %s", part, strerror(errno));
		goto out;
	}
	while (flock(fd, LOCK_EX) < 0 && errno == EINTR) /* one downloader per file */
		;
	rc = download_locked(url, shown, o, fd, part, path);
out:
	if (fd >= 0)
		close(fd);
	free(part);
	if (rc) {
		free(path);
		return rc;
	}
	*out = path;
	return KB_OK;
}
