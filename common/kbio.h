/* kbio.h — opening inputs, like htslib's hopen("-") and hpeek.
 *
 * "-" means stdin here, once for every tool: stdin can be read once, so a
 * second "-" (or NULL) in one process is refused (KB_ERR_ARG) rather than
 * read as empty. An input can be peeked at without consuming what was peeked,
 * so a pipe can be sniffed (a .kvc stream, a GGUF model or text) and then
 * read by whoever the type says, from its first byte:
 *
 *	struct kbio *io;
 *	enum kbio_type t;
 *	if (kbio_open(&io, path) || kbio_sniff(io, &t)) ... report kb_error()
 *	if (t == KBIO_KVC) kbio_kvc_reader(io, &r); else kbio_read_all(io, &text, &len);
 *	kbio_close(io);
 */
#ifndef KB_KBIO_H
#define KB_KBIO_H

#include <stdbool.h>
#include <stdio.h>

#include "kvc.h"
#include "util.h"

struct kbio;

enum kbio_type {
	KBIO_EMPTY, /* no bytes at all */
	KBIO_KVC,   /* a .kvc stream (kvblend-kvc(5)) */
	KBIO_GGUF,  /* a GGUF file */
	KBIO_OTHER, /* anything else: text, records */
};

/* Open path for reading ("-" or NULL: stdin, the first time only; a
 * directory is refused). KB_OK and *io, or KB_ERR_IO / KB_ERR_ARG with a
 * message naming the input. */
int kbio_open(struct kbio **io, const char *path) KB_WUR;
/* Close the input (stdin stays open, but is still used up). NULL: no-op. */
void kbio_close(struct kbio *io);

/* For messages: the path, or "<stdin>". */
const char *kbio_name(const struct kbio *io);
/* The path as given (NULL for stdin): a regular file can be mapped by it. */
const char *kbio_path(const struct kbio *io);

/* The first bytes, up to n (fewer only at the end of the input), without
 * consuming them: *buf (owned by io, valid until the next call) and *got.
 * KB_OK or KB_ERR_IO. */
int kbio_peek(struct kbio *io, size_t n, const void **buf, size_t *got) KB_WUR;
/* What the input holds, by its first bytes (peeked). KB_OK or KB_ERR_IO. */
int kbio_sniff(struct kbio *io, enum kbio_type *type) KB_WUR;

/* The whole input from its first byte (peeked bytes included) in a
 * NUL-terminated malloc()ed buffer, *data the caller's. KB_OK, KB_ERR_IO or
 * KB_ERR_NOMEM. */
int kbio_read_all(struct kbio *io, char **data, size_t *len) KB_WUR;
/* A .kvc reader of the input from its first byte. The reader reads io's
 * descriptor, so io must outlive it. KB_OK or the reader's error. */
int kbio_kvc_reader(struct kbio *io, struct kvc_reader **r) KB_WUR;

/* The whole of path ("-": stdin, once) in a NUL-terminated malloc()ed
 * buffer: kbio_open, kbio_read_all, kbio_close. */
int kbio_read_file(const char *path, char **data, size_t *len) KB_WUR;

/* For line-by-line readers: path ("-": stdin, once, as above) as a stdio
 * stream, or NULL with a message. kbio_fclose closes it (not stdin). */
FILE *kbio_fopen(const char *path) KB_WUR;
void kbio_fclose(FILE *f);

#endif
