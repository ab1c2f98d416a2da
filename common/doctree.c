/* doctree.c — see doctree.h. */
#include "doctree.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A directory the walk is inside, for loops. */
struct above {
	dev_t dev;
	ino_t ino;
	const char *path;
	const struct above *up;
};

struct walk {
	const struct doctree_opts *o;
	doctree_fn each;
	doctree_report_fn report;
	void *ctx;
	long errors;
};

bool doctree_is_dir(const char *path)
{
	struct stat st;
	return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static void tell(struct walk *w, bool error, const char *fmt, const char *a, const char *b)
{
	char msg[1024];
	snprintf(msg, sizeof msg, fmt, a, b);
	w->errors += error;
	if (w->report)
		w->report(w->ctx, error, msg);
}

static bool matches(char *const *globs, int n, const char *rel, const char *base)
{
	for (int i = 0; i < n; i++) {
		bool path = strchr(globs[i], '/') != NULL;
		if (!fnmatch(globs[i], path ? rel : base, path ? FNM_PATHNAME : 0))
			return true;
	}
	return false;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir (but . and .., and hidden ones), sorted; NULL after a report. */
static char **list(struct walk *w, const char *dir, size_t *n, int *rc)
{
	*n = 0;
	DIR *d = opendir(dir);
	if (!d) {
		tell(w, true, "'%s': %s", dir, strerror(errno));
		return NULL;
	}
	char **v = NULL;
	size_t cap = 0;
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *s = NULL;
		if (kb_grow(&v, &cap, *n + 1, sizeof *v, 32) || !(s = kb_strndup(e->d_name, strlen(e->d_name)))) {
			*rc = KB_ERR_NOMEM;
			break;
		}
		v[(*n)++] = s;
		errno = 0;
	}
	if (!*rc && errno)
		tell(w, true, "'%s': %s", dir, strerror(errno));
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof *v, by_name);
	return v;
}

static char *join(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	bool slash = na && a[na - 1] != '/';
	char *s = kb_malloc(na + slash + nb + 1);
	if (s) {
		memcpy(s, a, na);
		if (slash)
			s[na] = '/';
		memcpy(s + na + slash, b, nb + 1);
	}
	return s;
}

static int walk_dir(struct walk *w, const char *dir, const char *rel, const struct above *up)
{
	int rc = KB_OK;
	size_t n;
	char **names = list(w, dir, &n, &rc);
	for (size_t i = 0; i < n && !rc; i++) {
		char *path = join(dir, names[i]), *r = *rel ? join(rel, names[i]) : kb_strndup(names[i], strlen(names[i]));
		struct stat st;
		if (!path || !r) {
			rc = KB_ERR_NOMEM;
		} else if (stat(path, &st)) {
			tell(w, true, "'%s': %s", path, strerror(errno));
		} else if (S_ISDIR(st.st_mode)) {
			const struct above *a = up;
			while (a && !(a->dev == st.st_dev && a->ino == st.st_ino))
				a = a->up;
			if (matches(w->o->exclude, w->o->n_exclude, r, names[i]))
				;
			else if (a)
				tell(w, false, "'%s': a symlink loop (back to '%s'), not followed", path, a->path);
			else
				rc = walk_dir(w, path, r, &(struct above){ st.st_dev, st.st_ino, path, up });
		} else if (!S_ISREG(st.st_mode)) {
			tell(w, false, "'%s': not a regular file%s, skipped", path, "");
		} else if ((!w->o->n_include || matches(w->o->include, w->o->n_include, r, names[i])) &&
			   !matches(w->o->exclude, w->o->n_exclude, r, names[i])) {
			rc = w->each(w->ctx, path, r);
		}
		free(path);
		free(r);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int doctree_walk(const char *root, const struct doctree_opts *o, doctree_fn each, doctree_report_fn report,
		 void *ctx, long *n_errors)
{
	struct walk w = { o, each, report, ctx, 0 };
	struct stat st;
	int rc;
	if (stat(root, &st)) {
		tell(&w, true, "'%s': %s", root, strerror(errno));
		rc = KB_OK;
	} else {
		rc = walk_dir(&w, root, "", &(struct above){ st.st_dev, st.st_ino, root, NULL });
	}
	*n_errors = w.errors;
	if (rc == KB_ERR_NOMEM)
		kb_fail(rc, "'%s': out of memory", root);
	return rc;
}
