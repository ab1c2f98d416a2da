/* util.h — status codes, the last-error message, assertions, small helpers.
 *
 * common/ never prints or exits: a function that can fail for a runtime reason
 * returns a status (< 0 on error) after recording a one-line message with
 * kb_set_error(); the tool prints "kvblend-<tool>: <kb_error()>" and exits 1.
 * Bugs (broken invariants) stop the program with ASSERT().
 */
#ifndef KB_UTIL_H
#define KB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define KB_WUR __attribute__((warn_unused_result))

enum kb_status {
	KB_OK = 0,
	KB_EOF = -1,           /* clean end of a stream (readers) */
	KB_ERR_IO = -2,        /* the OS said no: open, read, write, mmap */
	KB_ERR_FORMAT = -3,    /* bytes that are not what they claim (corrupt, truncated, hostile) */
	KB_ERR_NOMEM = -4,
	KB_ERR_UNSUPPORTED = -5, /* valid but not handled: an architecture, a tensor type */
	KB_ERR_ARG = -6,       /* a caller-supplied value out of range (empty prompt, bad option value) */
	KB_ERR_MISMATCH = -7,  /* things that must agree do not (fingerprints, shapes) */
};

#define ASSERT(x) do { if (!(x)) kb_assert_fail(__FILE__, __LINE__, #x); } while (0)
_Noreturn void kb_assert_fail(const char *file, int line, const char *expr);

/* Record the message for the current thread and return status (for `return kb_fail(...)`). */
int kb_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message recorded on this thread ("" if none). */
const char *kb_error(void);

/* malloc/calloc/realloc that record "out of memory" on failure; overflow-checked count * size. */
void *kb_malloc(size_t n) KB_WUR;
void *kb_calloc(size_t count, size_t size) KB_WUR;
void *kb_realloc_array(void *p, size_t count, size_t size) KB_WUR;
/* A malloc()ed, NUL-terminated copy of s[0..n) (s may hold NULs), or NULL (out of memory). */
char *kb_strndup(const char *s, size_t n) KB_WUR;
/* printf into a malloc()ed string, or NULL (out of memory, kb_fail set). */
char *kb_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2))) KB_WUR;
/* Room for element n of a growing array: pv points to the array pointer (of
 * elements of elem bytes, *cap allocated); when n >= *cap it doubles (from
 * first when empty) until n fits. KB_OK, or KB_ERR_NOMEM with the array as it was. */
int kb_grow(void *pv, size_t *cap, size_t n, size_t elem, size_t first) KB_WUR;
/* Aligned allocation (align a power of two >= sizeof(void *)); free with free(). */
void *kb_aligned_alloc(size_t align, size_t n) KB_WUR;

/* Read a whole file ("-" = stdin) into a NUL-terminated malloc()ed buffer.
 * Returns KB_OK and sets *data (owned by the caller) and *len, or an error. */
int kb_read_file(const char *path, char **data, size_t *len) KB_WUR;

/* ---- atomic output ----
 * A file is written whole or not at all: into a temporary file beside it,
 * ".NAME.PID.HOST.N.tmp" (HOST: 8 hex digits of a hash of the host's name),
 * fsync, rename over the target, fsync of the folder. A temporary file is
 * registered while it exists: SIGINT, SIGTERM and SIGHUP (those the program
 * neither ignores nor handles itself) remove every registered one, then end
 * the process as the signal would have; exit() removes them too (a tool that
 * gives up half-way leaves nothing behind). Creating one also removes the
 * leftovers of earlier writes of the same NAME by processes of this host that
 * no longer exist (killed with SIGKILL, or a crash). */

/* Create a new temporary file beside path, registered, for writing path
 * atomically: write, fsync, rename over path, kb_fsync_parent(path), then
 * kb_temp_free(tmp). Returns the descriptor and sets *tmp (malloc()ed), or -1
 * with a message naming path. */
int kb_open_temp(const char *path, char **tmp) KB_WUR;
/* Forget the temporary file tmp (after renaming or removing it) and free the
 * string. NULL: no-op. */
void kb_temp_free(char *tmp);
/* Register a temporary file made otherwise, so signals remove it too; tmp is
 * kept by reference until kb_temp_forget(tmp). KB_OK, or KB_ERR_NOMEM when
 * too many are registered at once (the file is then not removed by signals). */
int kb_temp_register(const char *tmp) KB_WUR;
void kb_temp_forget(const char *tmp);
/* fsync the folder holding path, so a rename into it is durable (best effort). */
void kb_fsync_parent(const char *path);

/* An output written atomically (path) or in place (stdout, a device, a FIFO). */
struct kb_out {
	FILE *f;       /* write here */
	char *path;    /* owned: the target; NULL for stdout */
	char *tmp;     /* owned: the temporary file, NULL when written in place */
};
/* Open path ("-": stdout) for writing through o->f. KB_OK, or KB_ERR_IO with
 * a message naming path (o is then empty). */
int kb_out_open(struct kb_out *o, const char *path) KB_WUR;
/* Flush and check o->f; for a temporary file also fsync, rename it over the
 * target and fsync the folder. Closes o->f except stdout. KB_OK, or
 * KB_ERR_IO ("'out.jsonl': No space left on device", the target untouched). */
int kb_out_commit(struct kb_out *o) KB_WUR;
/* Give up: close o->f (not stdout), remove the temporary file; the target is
 * as it was. After kb_out_commit, or on an empty o: no-op. */
void kb_out_abort(struct kb_out *o);

/* Write all n bytes to fd, retrying on EINTR and short writes. */
int kb_write_all(int fd, const void *buf, size_t n) KB_WUR;

/* Seconds from a monotonic clock. */
double kb_now(void);

/* Overflow-checked size arithmetic: return 0 and set *out, or -1 on overflow. */
static inline int kb_mul_size(size_t a, size_t b, size_t *out)
{
	return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int kb_add_size(size_t a, size_t b, size_t *out)
{
	return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

/* Little-endian loads/stores that do not care about alignment. */
static inline uint16_t kb_le16(const void *p) { const uint8_t *b = p; return (uint16_t)(b[0] | b[1] << 8); }
static inline uint32_t kb_le32(const void *p) { const uint8_t *b = p; return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24; }
static inline uint64_t kb_le64(const void *p) { return (uint64_t)kb_le32(p) | (uint64_t)kb_le32((const uint8_t *)p + 4) << 32; }
static inline float kb_lef32(const void *p) { uint32_t u = kb_le32(p); float f; __builtin_memcpy(&f, &u, 4); return f; }
static inline double kb_lef64(const void *p) { uint64_t u = kb_le64(p); double f; __builtin_memcpy(&f, &u, 8); return f; }

#endif
