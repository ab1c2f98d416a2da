/* doctree.h — the documents of a directory tree, in a stable order.
 *
 * The tree is walked depth first; the entries of each directory are taken in
 * byte order of their names (strcmp), so the same tree always gives the same
 * files in the same order, whatever the file system's order. Names starting
 * with '.' (.git, .cache, editor files) are passed over. Symbolic links are
 * followed, to files and to directories, except a link back to a directory
 * the walk is inside (a loop), which is reported and not followed.
 *
 * Globs (fnmatch(3)): a pattern without '/' matches a file's or directory's
 * name, one with '/' its path relative to the root (FNM_PATHNAME). A file is
 * taken when it matches an --include pattern (or none are given) and no
 * --exclude pattern; a directory that matches an --exclude pattern is not
 * entered.
 */
#ifndef KB_DOCTREE_H
#define KB_DOCTREE_H

#include <stdbool.h>

#include "util.h"

struct doctree_opts {
	char *const *include; /* [n_include] globs, or none */
	int n_include;
	char *const *exclude; /* [n_exclude] globs */
	int n_exclude;
};

/* Called with each file: path (to open: the root joined with rel) and rel (the
 * path relative to the root, '/'-separated). Return KB_OK to go on; anything
 * else stops the walk, which returns it. */
typedef int (*doctree_fn)(void *ctx, const char *path, const char *rel);
/* Told what was not walked, in one line without the tool's name: an error
 * (error true: a directory that cannot be read, a link to nothing) or a
 * warning (a symlink loop, a file that is not a regular file). */
typedef void (*doctree_report_fn)(void *ctx, bool error, const char *msg);

/* true when path names a directory (following links). */
bool doctree_is_dir(const char *path);

/* Walk the tree at root, giving each file taken to each (in order) and each
 * problem to report (may be NULL). KB_OK once the whole tree was walked (*n_errors
 * counts the errors reported), or the status each stopped it with, or
 * KB_ERR_NOMEM. */
int doctree_walk(const char *root, const struct doctree_opts *o, doctree_fn each, doctree_report_fn report,
		 void *ctx, long *n_errors) KB_WUR;

#endif
