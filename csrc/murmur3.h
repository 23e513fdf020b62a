/* murmur3.h -- MurmurHash3 (Austin Appleby's design), x64-128 and x86-32 variants.
 *
 *   key bytes:  | block 0 (16) | block 1 (16) | ... | tail (0..15) |
 *                    |               |                   |
 *                    v               v                   v
 *   (h1, h2) <- mix k1,k2 <- mix k1,k2 <- ...        tail mix, then
 *                                                     h ^= len, fmix64
 *
 * x64-128 reads 16-byte blocks as two little-endian u64 (k1, k2); x86-32 reads
 * 4-byte little-endian blocks.  The results are bit-identical to the `mmh3`
 * Python package for every input and seed:
 *   mmh3.hash128(key, seed, True, False) == h2 << 64 | h1
 *   mmh3.hash(key, seed)                 == (int32_t)murmur3X86_32(key, len, seed)
 * Blocks are read with memcpy, so any alignment and any length is fine; no
 * state, no allocation.
 */
#ifndef HOMESTREAM_MURMUR3_H
#define HOMESTREAM_MURMUR3_H

#include <stddef.h>
#include <stdint.h>

/* Returns h1 (the low word) and stores h2 (the high word) in *h2 when h2 is
 * not NULL. */
uint64_t murmur3X64_128(const void *key, size_t len, uint32_t seed, uint64_t *h2);

/* Both words into out[0] = h1, out[1] = h2. */
void murmur3X64_128Pair(const void *key, size_t len, uint32_t seed, uint64_t out[2]);

uint32_t murmur3X86_32(const void *key, size_t len, uint32_t seed);

/* The 64-bit rotation and finaliser of MurmurHash3 x64, shared with other hashes of the core (subidx.c). */
static inline uint64_t murmur3Rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t murmur3Fmix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

#endif
