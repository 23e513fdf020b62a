/* bloom.h -- the Bloom filter of SPEC 4.1, bit for bit.
 *
 *   key (32-byte BLAKE3 digest) ──MurmurHash3 x64-128, seed 0──▶ h1 (low), h2 (high)
 *   bit i of k:  j = ((h1 + i*h2) mod 2^64) mod m          i = 0 .. k-1
 *
 *   bytes:   [  byte 0  ][  byte 1  ] ...  [ byte m/8-1 ]
 *   bits:     7 6 5 4 3 2 1 0  15 ... 8     bit j = byte j/8, mask 1 << (j%8)
 *
 * The bytes are the filter: serialising is handing them out, deserialising is
 * copying them in (m = 8 * bytes; k travels beside them, 7 unless told).
 * Sizing for n items at false-positive rate p: m = ceil(-n ln p / ln^2 2)
 * rounded up to whole bytes, at least 64 bits.
 * Errors: 0 / NULL with errno = EINVAL (bad size, mismatched union) or ENOMEM
 * (the filter is unchanged).
 */
#ifndef HOMESTREAM_BLOOM_H
#define HOMESTREAM_BLOOM_H

#include <stddef.h>
#include <stdint.h>

typedef struct bloom {
    uint64_t m;           /* bits = 8 * nbytes */
    uint32_t k;           /* probes per key */
    size_t nbytes;
    unsigned char *bits;
} bloom;

/* Bytes for n items at false-positive rate fp (0 < fp < 1); 0 + EINVAL on bad input. */
size_t bloomBytesForCount(uint64_t n, double fp);

/* An empty filter of nbytes (>= 8) bytes and k (1..64) probes. */
bloom *bloomNew(size_t nbytes, uint32_t k);

/* A filter whose bits are a copy of data[0..len) (len >= 8). */
bloom *bloomFromBytes(const void *data, size_t len, uint32_t k);

void bloomFree(bloom *b);

void bloomAdd(bloom *b, const void *key, size_t keylen);

/* count keys of keylen bytes each, back to back in keys. */
void bloomAddMany(bloom *b, const void *keys, size_t count, size_t keylen);

/* 1 if the key may be in the filter, 0 if it is certainly not. */
int bloomCheck(const bloom *b, const void *key, size_t keylen);

/* out[i] = bloomCheck(keys[i]) for count keys of keylen bytes; returns how many were 1. */
size_t bloomCheckMany(const bloom *b, const void *keys, size_t count, size_t keylen, unsigned char *out);

/* dst |= src; both must have the same m and k (else 0 + EINVAL). */
int bloomUnion(bloom *dst, const bloom *src);

/* The bit positions of a key, for tests: writes k positions to out. */
void bloomPositions(const bloom *b, const void *key, size_t keylen, uint64_t *out);

#endif
