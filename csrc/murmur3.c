/* murmur3.c -- MurmurHash3 x64-128 and x86-32.  See murmur3.h. */
#include <string.h>

#include "murmur3.h"

static inline uint32_t murmur3Rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static inline uint64_t murmur3Read64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t murmur3Read32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint32_t murmur3Fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bU;
    h ^= h >> 13;
    h *= 0xc2b2ae35U;
    h ^= h >> 16;
    return h;
}

void murmur3X64_128Pair(const void *key, size_t len, uint32_t seed, uint64_t out[2]) {
    const unsigned char *data = (const unsigned char *)key;
    const uint64_t c1 = 0x87c37b91114253d5ULL;
    const uint64_t c2 = 0x4cf5ad432745937fULL;
    uint64_t h1 = seed, h2 = seed;
    size_t nblocks = len / 16;

    for (size_t i = 0; i < nblocks; i++) {
        uint64_t k1 = murmur3Read64(data + i * 16);
        uint64_t k2 = murmur3Read64(data + i * 16 + 8);
        k1 *= c1; k1 = murmur3Rotl64(k1, 31); k1 *= c2; h1 ^= k1;
        h1 = murmur3Rotl64(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729;
        k2 *= c2; k2 = murmur3Rotl64(k2, 33); k2 *= c1; h2 ^= k2;
        h2 = murmur3Rotl64(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5;
    }

    const unsigned char *tail = data + nblocks * 16;
    uint64_t k1 = 0, k2 = 0;
    switch (len & 15) {
    case 15: k2 ^= (uint64_t)tail[14] << 48; /* fall through */
    case 14: k2 ^= (uint64_t)tail[13] << 40; /* fall through */
    case 13: k2 ^= (uint64_t)tail[12] << 32; /* fall through */
    case 12: k2 ^= (uint64_t)tail[11] << 24; /* fall through */
    case 11: k2 ^= (uint64_t)tail[10] << 16; /* fall through */
    case 10: k2 ^= (uint64_t)tail[9] << 8;   /* fall through */
    case 9:
        k2 ^= (uint64_t)tail[8];
        k2 *= c2; k2 = murmur3Rotl64(k2, 33); k2 *= c1; h2 ^= k2;
        /* fall through */
    case 8: k1 ^= (uint64_t)tail[7] << 56; /* fall through */
    case 7: k1 ^= (uint64_t)tail[6] << 48; /* fall through */
    case 6: k1 ^= (uint64_t)tail[5] << 40; /* fall through */
    case 5: k1 ^= (uint64_t)tail[4] << 32; /* fall through */
    case 4: k1 ^= (uint64_t)tail[3] << 24; /* fall through */
    case 3: k1 ^= (uint64_t)tail[2] << 16; /* fall through */
    case 2: k1 ^= (uint64_t)tail[1] << 8;  /* fall through */
    case 1:
        k1 ^= (uint64_t)tail[0];
        k1 *= c1; k1 = murmur3Rotl64(k1, 31); k1 *= c2; h1 ^= k1;
        break;
    default:
        break;
    }

    h1 ^= (uint64_t)len;
    h2 ^= (uint64_t)len;
    h1 += h2;
    h2 += h1;
    h1 = murmur3Fmix64(h1);
    h2 = murmur3Fmix64(h2);
    h1 += h2;
    h2 += h1;
    out[0] = h1;
    out[1] = h2;
}

uint64_t murmur3X64_128(const void *key, size_t len, uint32_t seed, uint64_t *h2) {
    uint64_t out[2];
    murmur3X64_128Pair(key, len, seed, out);
    if (h2) *h2 = out[1];
    return out[0];
}

uint32_t murmur3X86_32(const void *key, size_t len, uint32_t seed) {
    const unsigned char *data = (const unsigned char *)key;
    const uint32_t c1 = 0xcc9e2d51U, c2 = 0x1b873593U;
    uint32_t h1 = seed;
    size_t nblocks = len / 4;

    for (size_t i = 0; i < nblocks; i++) {
        uint32_t k1 = murmur3Read32(data + i * 4);
        k1 *= c1; k1 = murmur3Rotl32(k1, 15); k1 *= c2;
        h1 ^= k1;
        h1 = murmur3Rotl32(h1, 13);
        h1 = h1 * 5 + 0xe6546b64U;
    }
    const unsigned char *tail = data + nblocks * 4;
    uint32_t k1 = 0;
    switch (len & 3) {
    case 3: k1 ^= (uint32_t)tail[2] << 16; /* fall through */
    case 2: k1 ^= (uint32_t)tail[1] << 8;  /* fall through */
    case 1:
        k1 ^= tail[0];
        k1 *= c1; k1 = murmur3Rotl32(k1, 15); k1 *= c2; h1 ^= k1;
        break;
    default:
        break;
    }
    h1 ^= (uint32_t)len;
    return murmur3Fmix32(h1);
}
