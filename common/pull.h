/* pull.h — models by URL: each downloaded once into a cache folder, resumed
 * after an interruption, optionally checked against a SHA-256, and only then
 * renamed into place, so a partial download is never taken for a model.
 *
 * The folder is $XDG_CACHE_HOME/kvblend/models, else $HOME/.cache/kvblend/models.
 * A URL's file there is HASH-NAME: NAME the last part of the URL's path (letters,
 * digits, '.', '_' and '-' kept, others '_'), HASH the first 12 hex digits of
 * SHA-256(URL), so two URLs never share a file. While it downloads it is
 * HASH-NAME.part, held with an exclusive flock: a second process asking for the
 * same URL waits for the first and then uses its file.
 *
 * gguf_open (and so model_load and every tool's -m) resolves a URL through
 * pull_model, so `-m https://…/model.gguf` works wherever a model path does.
 */
#ifndef KB_PULL_H
#define KB_PULL_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct pull_opts {
	const char *sha256;  /* the file's SHA-256 in hex (64 digits), or NULL: not checked */
	void (*progress)(void *ctx, const char *name, uint64_t done, uint64_t total); /* may be NULL */
	void *ctx;
};

/* The models folder (not created): KB_OK and *dir (malloc()ed), or
 * KB_ERR_ARG when neither $XDG_CACHE_HOME nor $HOME is set. */
int pull_dir(char **dir) KB_WUR;
/* Where url's file lives in the models folder (it may not be there yet):
 * KB_OK and *path (malloc()ed). */
int pull_path(const char *url, char **path) KB_WUR;
/* true for the URLs pull_model takes (http://, https://). */
bool pull_is_url(const char *s);

/* The local file of url: at once when it is there (with o->sha256, its hash
 * is checked first: a mismatch is KB_ERR_MISMATCH and the file stays), else
 * downloaded — resuming HASH-NAME.part with a Range request when a previous
 * download was cut off — then checked: it must begin with the GGUF magic
 * (KB_ERR_FORMAT: an error page is not a model) and have o->sha256's hash
 * (KB_ERR_MISMATCH); a file that fails a check is removed. Only a whole,
 * checked file is renamed to its place (fsynced, then its folder).
 * A failed transfer keeps the .part to resume from and says so. o may be
 * NULL; its progress NULL means pull_set_progress's. Timeouts and retries:
 * remote_opts_env. KB_OK and *path (malloc()ed). */
int pull_model(const char *url, const struct pull_opts *o, char **path) KB_WUR;

/* The progress callback of downloads started without one (gguf_open's): the
 * tools set one that draws on a terminal. NULL: none. */
void pull_set_progress(void (*fn)(void *ctx, const char *name, uint64_t done, uint64_t total), void *ctx);

#endif
