/* kvcodec.h — the compressed layer payloads of .kvc caches (dtypes kv8, kv4,
 * kv3, kv2; kvblend-kvc(5)).
 *
 * A layer's K and V are quantized as KIVI does: keys per channel, in groups of
 * KVCODEC_GROUP consecutive tokens (a channel's values across neighbouring
 * tokens share a range, and keys' outlier channels keep theirs); values per
 * token, in groups of KVCODEC_GROUP channels. Each group stores its minimum
 * and step as f16 (the step rounded up, so every value is in range) and
 * `bits`-bit codes x = min + code * step. Key codes are stored as the
 * difference from the same channel's previous token (CacheGen's locality:
 * neighbouring tokens' keys are close), then each of K and V goes through
 * zstd. The payload:
 *
 *	u32 k_len, u32 v_len, K: zstd frame of k_len bytes, V: zstd frame of v_len
 *
 * and a frame decompresses to the group parameters (4 bytes per group, f16
 * min then f16 step) followed by the codes, packed least significant bit
 * first: K group by group (tokens), channel by channel, a group's tokens in
 * order; V token by token, channel by channel. Each layer decodes alone.
 *
 * The error of a value is at most half its group's step plus the f16 rounding
 * of the group's minimum: kvcodec_max_error() for a group's range.
 */
#ifndef KB_KVCODEC_H
#define KB_KVCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define KVCODEC_GROUP 64

/* Bytes the payload of rows x kv_dim values can take at most (for buffers and
 * for a reader's bound on a layer record). */
size_t kvcodec_bound(int bits, int rows, int kv_dim);

/* Encode rows of k and v (row t at + t * row_stride floats) into out (cap >=
 * kvcodec_bound). *len: the payload's size. KB_OK, KB_ERR_NOMEM, or KB_ERR_ARG
 * for a bits other than 2, 3, 4, 8. */
int kvcodec_encode(int bits, const float *k, const float *v, size_t row_stride, int rows, int kv_dim,
		   uint8_t *out, size_t cap, size_t *len) KB_WUR;

/* Decode a payload of len bytes into k and v (either may be NULL to check
 * only). KB_OK, or KB_ERR_FORMAT with a message saying what is wrong (sizes,
 * a bad frame, a frame of the wrong length), KB_ERR_NOMEM. */
int kvcodec_decode(int bits, const uint8_t *in, size_t len, int rows, int kv_dim, float *k, float *v,
		   size_t row_stride) KB_WUR;

/* The largest error of a value in a group whose values span [lo, hi]. */
double kvcodec_max_error(int bits, float lo, float hi);

#endif
