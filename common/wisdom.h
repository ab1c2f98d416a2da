/* wisdom.h — what kvblend has measured about this machine, kept between runs
 * (as FFTW keeps its wisdom): today the variant of one-token matmuls for each
 * weight type, timed once (kern_plan_matvec) and then reused, so that every
 * run on a machine takes the same variant and gives the same results bit for
 * bit (the variants differ in float rounding).
 *
 * The file: $KVBLEND_WISDOM, else $XDG_CACHE_HOME/kvblend-wisdom.tsv, else
 * ~/.cache/kvblend-wisdom.tsv; lines of tab-separated fields, the last one the
 * value, the others its key. It is a cache: a line that does not parse is
 * ignored, a file that cannot be read is as if empty, one that cannot be
 * written is left as it is (the value is then measured again next time), and
 * it is replaced atomically. */
#ifndef KB_WISDOM_H
#define KB_WISDOM_H

#include <stddef.h>

/* The file's path into buf; NULL when there is no home to put it in. */
const char *wisdom_path(char *buf, size_t n);
/* The value recorded for key (its fields joined by tabs) into val: 0, or -1
 * when there is none (or no file). */
int wisdom_get(const char *key, char *val, size_t n);
/* Record key = val, replacing an earlier value: 0, or -1 (nothing written). */
int wisdom_put(const char *key, const char *val);

#endif
