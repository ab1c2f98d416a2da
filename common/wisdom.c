/* wisdom.c — see wisdom.h. */
#include "wisdom.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define WISDOM_MAX_BYTES (1 << 20) /* a bigger file is not ours: ignored */

const char *wisdom_path(char *buf, size_t n)
{
	const char *e;
	int w;
	if ((e = getenv("KVBLEND_WISDOM")) && *e)
		w = snprintf(buf, n, "%s", e);
	else if ((e = getenv("XDG_CACHE_HOME")) && *e)
		w = snprintf(buf, n, "%s/kvblend-wisdom.tsv", e);
	else if ((e = getenv("HOME")) && *e)
		w = snprintf(buf, n, "%s/.cache/kvblend-wisdom.tsv", e);
	else
		return NULL;
	return w > 0 && (size_t)w < n ? buf : NULL;
}

/* The file's text (NUL-terminated, malloc()ed), or NULL when there is none to use. */
static char *wisdom_read(const char *path)
{
	struct stat sb;
	if (stat(path, &sb) || !S_ISREG(sb.st_mode) || sb.st_size > WISDOM_MAX_BYTES)
		return NULL;
	char *data;
	size_t len;
	if (kb_read_file(path, &data, &len))
		return NULL;
	return data;
}

/* Whether the line [p, end) is key's: key, a tab, then a value without tabs. */
static int is_key_line(const char *p, const char *end, const char *key, size_t kl)
{
	return (size_t)(end - p) > kl && !strncmp(p, key, kl) && p[kl] == '\t' &&
	       !memchr(p + kl + 1, '\t', (size_t)(end - p - kl - 1));
}

/* The value of key's line in text, as [*v, *e); 0, or -1. */
static int find(const char *text, const char *key, const char **v, const char **e)
{
	const size_t kl = strlen(key);
	for (const char *p = text; p && *p;) {
		const char *nl = strchr(p, '\n'), *end = nl ? nl : p + strlen(p);
		if (is_key_line(p, end, key, kl)) {
			*v = p + kl + 1, *e = end;
			return 0;
		}
		p = nl ? nl + 1 : NULL;
	}
	return -1;
}

int wisdom_get(const char *key, char *val, size_t n)
{
	char path[4096];
	char *text = wisdom_path(path, sizeof path) ? wisdom_read(path) : NULL;
	const char *v, *e;
	int rc = -1;
	if (text && !find(text, key, &v, &e) && e > v && (size_t)(e - v) < n) {
		memcpy(val, v, (size_t)(e - v));
		val[e - v] = 0;
		rc = 0;
	}
	free(text);
	return rc;
}

int wisdom_put(const char *key, const char *val)
{
	char path[4096];
	if (!wisdom_path(path, sizeof path) || strchr(val, '\t') || strchr(val, '\n') || strchr(key, '\n'))
		return -1;
	char *text = wisdom_read(path), *slash = strrchr(path, '/');
	if (slash && slash != path) { /* ~/.cache may not exist yet: one level made */
		*slash = 0;
		if (mkdir(path, 0755) && errno != EEXIST) {
			free(text);
			return -1;
		}
		*slash = '/';
	}
	char *tmp;
	int fd = kb_open_temp(path, &tmp);
	if (fd < 0) {
		free(text);
		return -1;
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		kb_temp_free(tmp);
		free(text);
		return -1;
	}
	/* every other line as it was, then this one */
	const size_t kl = strlen(key);
	for (const char *p = text; p && *p;) {
		const char *nl = strchr(p, '\n'), *end = nl ? nl : p + strlen(p);
		if (!is_key_line(p, end, key, kl) && end > p)
			fprintf(f, "%.*s\n", (int)(end - p), p);
		p = nl ? nl + 1 : NULL;
	}
	fprintf(f, "%s\t%s\n", key, val);
	int bad = fflush(f) || fsync(fileno(f)) || ferror(f);
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path)) {
		unlink(tmp);
		kb_temp_free(tmp);
		free(text);
		return -1;
	}
	kb_temp_free(tmp);
	free(text);
	return 0;
}
