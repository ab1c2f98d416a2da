/* hash.h — SHA-256 (content addresses, fingerprints) and CRC32C (record checksums). */
#ifndef KB_HASH_H
#define KB_HASH_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
	uint32_t h[8];
	uint64_t n;        /* bytes hashed so far */
	uint8_t buf[64];
	size_t buf_len;
};
void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
void sha256_final(struct sha256 *s, uint8_t out[32]);
void sha256(const void *data, size_t n, uint8_t out[32]);
/* Lower-case hex of n bytes into out (2n + 1 bytes with the NUL). */
void hash_hex(const uint8_t *bytes, size_t n, char *out);

/* CRC32C (Castagnoli), as used by ext4/iSCSI: crc32c(0, "123456789", 9) == 0xe3069283.
 * Chain by passing the previous result as crc. */
uint32_t crc32c(uint32_t crc, const void *data, size_t n);

#endif
