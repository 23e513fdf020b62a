/* bloom.c -- SPEC 4.1 Bloom filter.  See bloom.h. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "bloom.h"
#include "murmur3.h"

size_t bloomBytesForCount(uint64_t n, double fp) {
    if (!(fp > 0.0 && fp < 1.0)) {
        errno = EINVAL;
        return 0;
    }
    double ln2 = log(2.0);
    double bits = ceil(-(double)n * log(fp) / (ln2 * ln2));
    if (bits < 64.0) bits = 64.0;
    if (bits > 8.0 * (double)(SIZE_MAX / 2)) {
        errno = EINVAL;
        return 0;
    }
    uint64_t ibits = (uint64_t)bits;
    return (size_t)((ibits + 7) / 8);
}

bloom *bloomNew(size_t nbytes, uint32_t k) {
    if (nbytes < 8 || k < 1 || k > 64 || nbytes > SIZE_MAX / 8) {
        errno = EINVAL;
        return NULL;
    }
    bloom *b = hsMalloc(sizeof(*b));
    if (!b) {
        errno = ENOMEM;
        return NULL;
    }
    b->bits = hsCalloc(nbytes, 1);
    if (!b->bits) {
        hsFree(b);
        errno = ENOMEM;
        return NULL;
    }
    b->nbytes = nbytes;
    b->m = (uint64_t)nbytes * 8;
    b->k = k;
    return b;
}

bloom *bloomFromBytes(const void *data, size_t len, uint32_t k) {
    bloom *b = bloomNew(len, k);
    if (b) memcpy(b->bits, data, len);
    return b;
}

void bloomFree(bloom *b) {
    if (!b) return;
    hsFree(b->bits);
    hsFree(b);
}

void bloomPositions(const bloom *b, const void *key, size_t keylen, uint64_t *out) {
    uint64_t h[2];
    murmur3X64_128Pair(key, keylen, 0, h);
    for (uint32_t i = 0; i < b->k; i++) out[i] = (h[0] + (uint64_t)i * h[1]) % b->m;
}

void bloomAdd(bloom *b, const void *key, size_t keylen) {
    uint64_t h[2];
    murmur3X64_128Pair(key, keylen, 0, h);
    uint64_t x = h[0];
    for (uint32_t i = 0; i < b->k; i++, x += h[1]) {
        uint64_t j = x % b->m;
        b->bits[j >> 3] |= (unsigned char)(1u << (j & 7));
    }
}

void bloomAddMany(bloom *b, const void *keys, size_t count, size_t keylen) {
    const unsigned char *p = keys;
    for (size_t i = 0; i < count; i++) bloomAdd(b, p + i * keylen, keylen);
}

int bloomCheck(const bloom *b, const void *key, size_t keylen) {
    uint64_t h[2];
    murmur3X64_128Pair(key, keylen, 0, h);
    uint64_t x = h[0];
    for (uint32_t i = 0; i < b->k; i++, x += h[1]) {
        uint64_t j = x % b->m;
        if (!(b->bits[j >> 3] & (1u << (j & 7)))) return 0;
    }
    return 1;
}

size_t bloomCheckMany(const bloom *b, const void *keys, size_t count, size_t keylen, unsigned char *out) {
    const unsigned char *p = keys;
    size_t hits = 0;
    for (size_t i = 0; i < count; i++) {
        out[i] = (unsigned char)bloomCheck(b, p + i * keylen, keylen);
        hits += out[i];
    }
    return hits;
}

int bloomUnion(bloom *dst, const bloom *src) {
    if (dst->m != src->m || dst->k != src->k) {
        errno = EINVAL;
        return 0;
    }
    for (size_t i = 0; i < dst->nbytes; i++) dst->bits[i] |= src->bits[i];
    return 1;
}
