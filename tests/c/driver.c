/* driver.c -- exercises every C structure of csrc/ under ASan/UBSan:
 * known answers, differential checks against brute force, a failing
 * allocator (the Nth allocation fails: the structure must stay whole and
 * usable, and nothing may leak), and random-byte fuzz loops.
 * Usage: driver [iterations-scale]; exit 0 when everything holds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bloom.h"
#include "crc32c.h"
#include "murmur3.h"
#include "riblt.h"
#include "sse.h"
#include "scan.h"
#include "subidx.h"
#include "trie.h"
#include "verify.h"

#include <poll.h>

/* ---- the failing allocator (test-only globals live here, not in the library) ---- */
static long allocCount, allocFailAt = -1, allocLive;

static int allocShouldFail(void) {
    allocCount++;
    return allocFailAt >= 0 && allocCount == allocFailAt;
}
void *hsTestMalloc(size_t size) {
    if (allocShouldFail()) return NULL;
    void *p = malloc(size ? size : 1);
    if (p) allocLive++;
    return p;
}
void *hsTestCalloc(size_t count, size_t size) {
    if (allocShouldFail()) return NULL;
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p) allocLive++;
    return p;
}
void *hsTestRealloc(void *ptr, size_t size) {
    if (allocShouldFail()) return NULL;
    void *p = realloc(ptr, size ? size : 1);
    if (p && !ptr) allocLive++;
    return p;
}
void hsTestFree(void *ptr) {
    if (ptr) allocLive--;
    free(ptr);
}
static void failAt(long n) {
    allocCount = 0;
    allocFailAt = n;
}

static int failures;
static long oomSeen; /* failed allocations the structures reported (the failing allocator did work) */
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                          \
        }                                                                        \
    } while (0)

static uint64_t rngState = 0x1234567;
static uint64_t rnd(void) {
    uint64_t z = (rngState += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- crc32c, murmur3 ---- */
static void testHashes(int scale) {
    CHECK(crc32cUpdate(0, "123456789", 9) == 0xE3069283u);
    CHECK(crc32cUpdateSoft(0, "123456789", 9) == 0xE3069283u);
    CHECK(crc32cUpdate(0, NULL, 0) == 0);
    unsigned char buf[300];
    for (int it = 0; it < 2000 * scale; it++) {
        size_t len = rnd() % 300, off = rnd() % 8;
        if (off > len) off = len;
        for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)rnd();
        /* exact-size heap copy so ASan sees any over-read */
        unsigned char *h = malloc(len ? len : 1);
        memcpy(h, buf, len);
        uint32_t a = crc32cUpdate(7, h + off, len - off), b = crc32cUpdateSoft(7, h + off, len - off);
        CHECK(a == b);
        uint64_t out[2];
        murmur3X64_128Pair(h, len, (uint32_t)rnd(), out);
        (void)murmur3X86_32(h, len, (uint32_t)rnd());
        free(h);
    }
    CHECK(murmur3X86_32("", 0, 1) == 0x514E28B7u);
    CHECK(murmur3X86_32("hello", 5, 0) == 0x248BFA47u);
    uint64_t h2 = 1;
    CHECK(murmur3X64_128("", 0, 0, &h2) == 0 && h2 == 0);
}

/* ---- trie against brute force ---- */
typedef struct {
    unsigned char key[8];
    size_t len;
    int kind;
    uint32_t id;
    int live;
} refEntry;

#define REF_MAX 4096
static refEntry ref[REF_MAX];
static size_t refN;

static int refFind(const unsigned char *k, size_t len, int kind, uint32_t id) {
    for (size_t i = 0; i < refN; i++)
        if (ref[i].live && ref[i].len == len && ref[i].kind == kind && ref[i].id == id && !memcmp(ref[i].key, k, len))
            return (int)i;
    return -1;
}

static int cmpU32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Compare trieMatch of key with the brute-force answer. */
static void trieCheckKey(trie *t, trieMatchBuf *mb, const unsigned char *key, size_t len) {
    uint32_t want[REF_MAX];
    size_t nw = 0;
    for (size_t i = 0; i < refN; i++) {
        if (!ref[i].live) continue;
        int hit = ref[i].kind == TRIE_PREFIX ? (ref[i].len <= len && !memcmp(ref[i].key, key, ref[i].len))
                                             : (ref[i].len == len && !memcmp(ref[i].key, key, len));
        if (!hit) continue;
        int dup = 0;
        for (size_t j = 0; j < nw; j++) dup |= want[j] == ref[i].id;
        if (!dup) want[nw++] = ref[i].id;
    }
    size_t n;
    if (!trieMatch(t, key, len, mb, &n)) {
        CHECK(errno == ERANGE);
        long saved = allocFailAt;
        allocFailAt = -1;
        CHECK(trieMatchBufReserve(mb, n));
        allocFailAt = saved;
        CHECK(trieMatch(t, key, len, mb, &n));
    }
    CHECK(n == nw);
    if (n != nw) return;
    uint32_t *got = malloc(sizeof(uint32_t) * (n + 1));
    memcpy(got, mb->ids, sizeof(uint32_t) * n);
    qsort(got, n, sizeof(uint32_t), cmpU32);
    qsort(want, nw, sizeof(uint32_t), cmpU32);
    CHECK(memcmp(got, want, sizeof(uint32_t) * n) == 0);
    free(got);
}

static void randomKey(unsigned char *k, size_t *len) {
    *len = rnd() % 6;
    for (size_t i = 0; i < *len; i++) k[i] = "ab/\xc3\0"[rnd() % 5];
}

/* Random inserts/removes; with failAtN >= 0 the Nth allocation fails once. */
static void trieRound(long failAtN, int ops) {
    refN = 0;
    failAt(-1);
    long live0 = allocLive;
    trie *t = trieNew();
    trieMatchBuf *mb = trieMatchBufNew(4);
    CHECK(t && mb);
    failAt(failAtN);
    for (int op = 0; op < ops; op++) {
        unsigned char k[8];
        size_t len;
        randomKey(k, &len);
        int kind = (int)(rnd() & 1);
        uint32_t id = (uint32_t)(rnd() % 24);
        if (rnd() % 4) {
            int present = refFind(k, len, kind, id) >= 0;
            errno = 0;
            int r = trieInsert(t, k, len, kind, id);
            if (r) {
                CHECK(!present);
                if (refN < REF_MAX) {
                    memcpy(ref[refN].key, k, len);
                    ref[refN].len = len;
                    ref[refN].kind = kind;
                    ref[refN].id = id;
                    ref[refN].live = 1;
                    refN++;
                }
            } else if (errno == ENOMEM) {
                oomSeen++;
                CHECK(!present); /* failed, nothing changed: checked below */
            } else {
                CHECK(errno == 0 && present);
            }
        } else {
            int at = refFind(k, len, kind, id);
            int r = trieRemove(t, k, len, kind, id);
            CHECK(r == (at >= 0));
            if (at >= 0) ref[at].live = 0;
        }
        uint64_t liveN = 0;
        for (size_t i = 0; i < refN; i++) liveN += ref[i].live;
        CHECK(trieSize(t) == liveN);
        unsigned char q[8];
        size_t ql;
        randomKey(q, &ql);
        trieCheckKey(t, mb, q, ql);
    }
    /* a popular entry: past the inline ids into the hash set and back */
    for (uint32_t id = 100; id < 300; id++) {
        if (trieInsert(t, "ab", 2, TRIE_PREFIX, id)) {
            memcpy(ref[refN].key, "ab", 2);
            ref[refN].len = 2;
            ref[refN].kind = TRIE_PREFIX;
            ref[refN].id = id;
            ref[refN].live = 1;
            refN++;
        }
    }
    trieCheckKey(t, mb, (const unsigned char *)"ab/", 3);
    for (uint32_t id = 100; id < 300; id += 3) {
        int at = refFind((const unsigned char *)"ab", 2, TRIE_PREFIX, id);
        CHECK(trieRemove(t, "ab", 2, TRIE_PREFIX, id) == (at >= 0));
        if (at >= 0) ref[at].live = 0;
    }
    trieCheckKey(t, mb, (const unsigned char *)"ab", 2);
    failAt(-1);
    trieMatchBufFree(mb);
    trieFree(t);
    CHECK(allocLive == live0);
}

static void testTrie(int scale) {
    for (int r = 0; r < 20 * scale; r++) trieRound(-1, 200);
    /* every allocation of a long run fails once in turn */
    for (long n = 1; n < 400; n++) trieRound(n, 120);
    /* bulk insert with a failure in the middle */
    for (long n = 1; n < 40; n++) {
        failAt(-1);
        trie *t = trieNew();
        const char keys[] = "aaabacbbbc";
        uint64_t off[6] = {0, 2, 4, 6, 8, 10};
        uint8_t kinds[5] = {0, 1, 0, 1, 0};
        uint32_t ids[5] = {1, 2, 3, 4, 5};
        size_t added, done;
        failAt(n);
        int ok = trieInsertMany(t, keys, off, kinds, ids, 5, &added, &done);
        CHECK(ok || (errno == ENOMEM && done < 5 && added == done));
        oomSeen += !ok;
        CHECK(trieSize(t) == added);
        failAt(-1);
        CHECK(trieInsertMany(t, keys, off, kinds, ids, 5, &added, &done) && done == 5);
        CHECK(trieSize(t) == 5);
        trieFree(t);
    }
    failAt(-1);
}

/* ---- subidx against the same brute force (PREFIX keys end with '/') ---- */
static void subidxCheckKey(subidx *t, subidxMatchBuf *mb, const unsigned char *key, size_t len) {
    uint32_t want[REF_MAX];
    size_t nw = 0;
    for (size_t i = 0; i < refN; i++) {
        if (!ref[i].live) continue;
        int hit = ref[i].kind == SUBIDX_PREFIX ? (ref[i].len <= len && !memcmp(ref[i].key, key, ref[i].len))
                                               : (ref[i].len == len && !memcmp(ref[i].key, key, len));
        if (!hit) continue;
        int dup = 0;
        for (size_t j = 0; j < nw; j++) dup |= want[j] == ref[i].id;
        if (!dup) want[nw++] = ref[i].id;
    }
    size_t n;
    if (!subidxMatch(t, key, len, mb, &n)) {
        CHECK(errno == ERANGE);
        long saved = allocFailAt;
        allocFailAt = -1;
        CHECK(subidxMatchBufReserve(mb, n));
        allocFailAt = saved;
        CHECK(subidxMatch(t, key, len, mb, &n));
    }
    CHECK(n == nw);
    if (n != nw) return;
    /* the pair form with the other index absent gives the same ids */
    CHECK(subidxMatchPair(NULL, NULL, 0, t, key, len, mb) == n);
    uint32_t *got = malloc(sizeof(uint32_t) * (n + 1));
    memcpy(got, mb->ids, sizeof(uint32_t) * n);
    qsort(got, n, sizeof(uint32_t), cmpU32);
    qsort(want, nw, sizeof(uint32_t), cmpU32);
    CHECK(memcmp(got, want, sizeof(uint32_t) * n) == 0);
    free(got);
}

static void subidxRefAdd(const void *k, size_t len, int kind, uint32_t id) {
    if (refN >= REF_MAX) return;
    memcpy(ref[refN].key, k, len);
    ref[refN].len = len;
    ref[refN].kind = kind;
    ref[refN].id = id;
    ref[refN].live = 1;
    refN++;
}

static void subidxRound(long failAtN, int ops) {
    refN = 0;
    failAt(-1);
    long live0 = allocLive;
    subidx *t = subidxNew(rnd());
    subidxMatchBuf *mb = subidxMatchBufNew(4);
    CHECK(t && mb);
    failAt(failAtN);
    for (int op = 0; op < ops; op++) {
        unsigned char k[8];
        size_t len;
        randomKey(k, &len);
        int kind = (int)(rnd() & 1);
        if (kind == SUBIDX_PREFIX && (rnd() & 7)) { /* mostly valid prefix keys, sometimes EINVAL */
            if (len == 0) len = 1;
            k[len - 1] = '/';
        }
        uint32_t id = (uint32_t)(rnd() % 24);
        if (rnd() % 4) {
            int present = refFind(k, len, kind, id) >= 0;
            int bad = kind == SUBIDX_PREFIX && (len == 0 || k[len - 1] != '/');
            errno = 0;
            int r = subidxInsert(t, k, len, kind, id);
            if (r) {
                CHECK(!present && !bad);
                subidxRefAdd(k, len, kind, id);
            } else if (errno == ENOMEM) {
                oomSeen++;
                CHECK(!present && !bad);
            } else if (errno == EINVAL) {
                CHECK(bad);
            } else {
                CHECK(errno == 0 && present);
            }
        } else {
            int at = refFind(k, len, kind, id);
            int r = subidxRemove(t, k, len, kind, id);
            CHECK(r == (at >= 0));
            if (at >= 0) ref[at].live = 0;
        }
        uint64_t liveN = 0;
        for (size_t i = 0; i < refN; i++) liveN += ref[i].live;
        CHECK(subidxSize(t) == liveN);
        unsigned char q[8];
        size_t ql;
        randomKey(q, &ql);
        subidxCheckKey(t, mb, q, ql);
    }
    /* popular entries: both kinds of one key past the inline ids into hash sets and back */
    for (uint32_t id = 100; id < 300; id++) {
        int kind = (int)(id & 1);
        errno = 0;
        if (subidxInsert(t, "ab/", 3, kind, id)) subidxRefAdd("ab/", 3, kind, id);
        else oomSeen += errno == ENOMEM;
        if (id % 7 == 0) subidxCheckKey(t, mb, (const unsigned char *)"ab/", 3);
    }
    subidxCheckKey(t, mb, (const unsigned char *)"ab/", 3);
    subidxCheckKey(t, mb, (const unsigned char *)"ab/a", 4);
    for (uint32_t id = 100; id < 300; id++) {
        int kind = (int)(id & 1);
        if (id % 3 == 0 && id > 150) continue;
        int at = refFind((const unsigned char *)"ab/", 3, kind, id);
        CHECK(subidxRemove(t, "ab/", 3, kind, id) == (at >= 0));
        if (at >= 0) ref[at].live = 0;
        if (id % 11 == 0) subidxCheckKey(t, mb, (const unsigned char *)"ab/", 3);
    }
    subidxCheckKey(t, mb, (const unsigned char *)"ab/", 3);
    subidxCheckKey(t, mb, (const unsigned char *)"ab/b", 4);
    failAt(-1);
    subidxMatchBufFree(mb);
    subidxFree(t);
    CHECK(allocLive == live0);
}

/* A key with more '/' than one batch of probes, entries at many depths. */
static void subidxLongKey(void) {
    enum { L = 150 };
    unsigned char key[L];
    for (size_t i = 0; i < L; i++) key[i] = (i % 2) ? '/' : 'x';
    subidx *t = subidxNew(42);
    subidxMatchBuf *mb = subidxMatchBufNew(4);
    CHECK(t && mb);
    uint32_t expect = 0;
    for (size_t len = 2; len <= L; len += 2) { /* every '/'-terminated prefix */
        if (len % 6 == 0) {
            CHECK(subidxInsert(t, key, len, SUBIDX_PREFIX, (uint32_t)len));
            expect++;
        }
        CHECK(subidxInsert(t, key, len - 1, SUBIDX_EXACT, 100000 + (uint32_t)len)); /* never the whole key */
    }
    CHECK(subidxInsert(t, key, L, SUBIDX_EXACT, 7));
    expect++;
    size_t n = 0;
    if (!subidxMatch(t, key, L, mb, &n)) {
        CHECK(subidxMatchBufReserve(mb, n));
        CHECK(subidxMatch(t, key, L, mb, &n));
    }
    CHECK(n == expect);
    for (size_t i = 0; i < n; i++) CHECK(mb->ids[i] == 7 || (mb->ids[i] % 6 == 0 && mb->ids[i] <= L));
    CHECK(subidxInsert(t, "a", 1, SUBIDX_PREFIX, 1) == 0 && errno == EINVAL);
    CHECK(subidxInsert(t, "", 0, SUBIDX_PREFIX, 1) == 0 && errno == EINVAL);
    CHECK(subidxInsert(t, "a/", 2, SUBIDX_PREFIX, SUBIDX_NO_ID) == 0 && errno == EINVAL);
    subidxMatchBufFree(mb);
    subidxFree(t);
}

static void testSubidx(int scale) {
    for (int r = 0; r < 20 * scale; r++) subidxRound(-1, 200);
    for (long n = 1; n < 400; n++) subidxRound(n, 120);
    subidxLongKey();
    /* a big table: growth, backward-shift deletion, and matching after it */
    subidx *t = subidxNew(rnd());
    subidxMatchBuf *mb = subidxMatchBufNew(16);
    char k[32];
    for (uint32_t i = 0; i < 20000 * (uint32_t)scale; i++) {
        int len = snprintf(k, sizeof k, "u%u/p/", i % 5000);
        CHECK(subidxInsert(t, k, (size_t)len, SUBIDX_PREFIX, i));
    }
    for (uint32_t i = 0; i < 20000 * (uint32_t)scale; i += 2) {
        int len = snprintf(k, sizeof k, "u%u/p/", i % 5000);
        CHECK(subidxRemove(t, k, (size_t)len, SUBIDX_PREFIX, i));
    }
    for (uint32_t u = 0; u < 5000; u += 97) {
        int len = snprintf(k, sizeof k, "u%u/p/x", u);
        size_t n;
        if (!subidxMatch(t, k, (size_t)len, mb, &n)) {
            CHECK(subidxMatchBufReserve(mb, n));
            CHECK(subidxMatch(t, k, (size_t)len, mb, &n));
        }
        CHECK(n == (u % 2 ? 4u * (uint32_t)scale : 0u));
    }
    subidxMatchBufFree(mb);
    subidxFree(t);
    /* bulk insert with a failure in the middle */
    for (long n = 1; n < 40; n++) {
        failAt(-1);
        subidx *b = subidxNew(n);
        const char keys[] = "a/a/b/b/bb/";
        uint64_t off[6] = {0, 2, 4, 6, 8, 11};
        uint8_t kinds[5] = {0, 1, 0, 1, 1};
        uint32_t ids[5] = {1, 2, 3, 4, 5};
        size_t added, done;
        failAt(n);
        int ok = subidxInsertMany(b, keys, off, kinds, ids, 5, &added, &done);
        CHECK(ok || (errno == ENOMEM && done < 5 && added == done));
        oomSeen += !ok;
        CHECK(subidxSize(b) == added);
        failAt(-1);
        CHECK(subidxInsertMany(b, keys, off, kinds, ids, 5, &added, &done) && done == 5);
        CHECK(subidxSize(b) == 5);
        subidxFree(b);
    }
    failAt(-1);
}

/* ---- bloom ---- */
static void testBloom(int scale) {
    for (long n = 1; n <= 3; n++) {
        failAt(n);
        bloom *b = bloomNew(64, 7);
        failAt(-1);
        CHECK(b == NULL || n > 2);
        bloomFree(b);
    }
    CHECK(bloomNew(7, 7) == NULL && errno == EINVAL);
    CHECK(bloomBytesForCount(3, 0.01) == 8 && bloomBytesForCount(100, 0.01) == 120);
    bloom *a = bloomNew(128, 7), *b = bloomNew(128, 7), *c = bloomNew(136, 7);
    unsigned char keys[32 * 64];
    for (size_t i = 0; i < sizeof(keys); i++) keys[i] = (unsigned char)rnd();
    bloomAddMany(a, keys, 32, 32);
    bloomAddMany(b, keys + 32 * 32, 32, 32);
    CHECK(bloomUnion(a, b));
    CHECK(!bloomUnion(a, c) && errno == EINVAL);
    unsigned char out[64];
    CHECK(bloomCheckMany(a, keys, 64, 32, out) == 64);
    for (int it = 0; it < 500 * scale; it++) { /* fuzz: any bytes as filter and key */
        size_t len = 8 + rnd() % 40, klen = rnd() % 40;
        unsigned char *f = malloc(len), *k = malloc(klen ? klen : 1);
        for (size_t i = 0; i < len; i++) f[i] = (unsigned char)rnd();
        for (size_t i = 0; i < klen; i++) k[i] = (unsigned char)rnd();
        bloom *x = bloomFromBytes(f, len, 1 + (uint32_t)(rnd() % 64));
        bloomAdd(x, k, klen);
        CHECK(bloomCheck(x, k, klen));
        bloomFree(x);
        free(f);
        free(k);
    }
    bloomFree(a);
    bloomFree(b);
    bloomFree(c);
}

/* ---- riblt ---- */
static void testRiblt(int scale) {
    enum { NA = 300, ND = 40 };
    uint64_t keys[NA + ND];
    for (int i = 0; i < NA + ND; i++) keys[i] = rnd();
    for (long n = -1; n < 30; n++) {
        failAt(-1);
        long live0 = allocLive;
        failAt(n);
        riblt *a = ribltNew(5, 16), *b = ribltNew(5, 16);
        if (!a || !b) {
            oomSeen++;
            CHECK(errno == ENOMEM);
            ribltFree(a);
            ribltFree(b);
            failAt(-1);
            CHECK(allocLive == live0);
            continue;
        }
        ribltUpdateMany(a, keys, NA, 1);                 /* A = keys[0 .. NA) */
        ribltUpdateMany(b, keys + ND, NA, 1);            /* B = keys[ND .. NA+ND) */
        size_t m = 16;
        int complete = 0;
        while (!complete && m < 4096) {
            m *= 2;
            if (!ribltExtend(a, m, keys, NA)) { CHECK(errno == ENOMEM); m /= 2; failAt(-1); continue; }
            if (!ribltExtend(b, m, keys + ND, NA)) { CHECK(errno == ENOMEM); m /= 2; failAt(-1); continue; }
            riblt *d = ribltCopy(a, m);
            if (!d) { CHECK(errno == ENOMEM); failAt(-1); m /= 2; continue; }
            CHECK(ribltSubtract(d, b));
            uint64_t oa[1024], ob[1024];
            size_t na, nb;
            complete = ribltDecode(d, oa, 1024, &na, ob, 1024, &nb);
            if (!complete && errno == ENOMEM) { oomSeen++; failAt(-1); ribltFree(d); m /= 2; continue; }
            if (complete) {
                CHECK(na == ND && nb == ND);
                uint64_t sa = 0, sb = 0, wa = 0, wb = 0;
                for (size_t i = 0; i < na; i++) sa ^= oa[i] * 0x9e37, wa ^= keys[i] * 0x9e37;
                for (size_t i = 0; i < nb; i++) sb ^= ob[i] * 0x9e37, wb ^= keys[NA + i] * 0x9e37;
                CHECK(sa == wa && sb == wb);
            }
            ribltFree(d);
        }
        CHECK(complete);
        /* serialise, then parse back, with a failure somewhere */
        unsigned char wire[64 * RIBLT_SYMBOL_MAX_BYTES];
        size_t w;
        CHECK(ribltSerialize(a, 0, 64, wire, sizeof(wire), &w));
        CHECK(!ribltSerialize(a, 0, 64, wire, 10, &w) && errno == ERANGE);
        riblt *c = ribltNew(5, 0);
        if (c) {
            size_t added;
            if (ribltAppendSymbols(c, wire, w, &added)) {
                CHECK(added == 64 && c->n == 64);
                for (size_t i = 0; i < 64; i++) CHECK(c->sym[i].key == a->sym[i].key && c->sym[i].count == a->sym[i].count);
            } else {
                CHECK(errno == ENOMEM && c->n == 0);
            }
        }
        failAt(-1);
        ribltFree(c);
        ribltFree(a);
        ribltFree(b);
        CHECK(allocLive == live0);
    }
    /* fuzz the parser and the decoder with arbitrary bytes */
    for (int it = 0; it < 3000 * scale; it++) {
        size_t len = rnd() % 80;
        unsigned char *p = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) p[i] = (rnd() & 3) ? (unsigned char)rnd() : (unsigned char)(rnd() & 1);
        riblt *s = ribltNew(rnd(), 0);
        size_t added;
        if (ribltAppendSymbols(s, p, len, &added)) {
            uint64_t oa[64], ob[64];
            size_t na, nb;
            (void)ribltDecode(s, oa, 64, &na, ob, 64, &nb);
            CHECK(na <= 64 && nb <= 64);
        }
        ribltFree(s);
        free(p);
    }
}

/* ---- sse: one framed log record (engine/log/record.py layout, CRC left 0: sseReplay does not check it) ---- */
static size_t sseRecord(unsigned char *o, int kind, uint64_t seq, uint64_t ts, const char *user,
                        const unsigned char *path, size_t plen, size_t clen, size_t vlen) {
    size_t len = SSE_HEADER_SIZE + plen + clen + vlen;
    memset(o, 0, len);
    for (int i = 0; i < 4; i++) o[i] = (unsigned char)(len >> (8 * i));
    o[8] = 0xB1;
    o[9] = (unsigned char)kind;
    o[10] = (unsigned char)plen;
    o[11] = (unsigned char)(plen >> 8);
    o[12] = (unsigned char)clen;
    o[13] = (unsigned char)(clen >> 8);
    for (int i = 0; i < 8; i++) o[16 + i] = (unsigned char)(seq >> (8 * i));
    for (int i = 0; i < 8; i++) o[24 + i] = (unsigned char)(ts >> (8 * i));
    for (int i = 0; i < 4; i++) o[32 + i] = (unsigned char)(vlen >> (8 * i));
    memcpy(o + 36, user, SSE_USER_SIZE);
    for (int i = 0; i < 32; i++) o[88 + i] = (unsigned char)i;
    memcpy(o + SSE_HEADER_SIZE, path, plen);
    return len;
}

static void testSse(int scale) {
    static const char user[] = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u";
    sseFilter all = {NULL, "/", 1, 1, 0}, mine = {user, "/", 1, 1, 1};
    sseResult r;
    unsigned char rec[1024];
    size_t len = sseRecord(rec, 1, 1, 5, user, (const unsigned char *)"/pub/a\"\n\x01", 9, 0, 3);
    static const char want[] =
        "id: 0000000000001.ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u\nevent: PUT\n"
        "data: {\"seq\":1,\"user\":\"ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u\","
        "\"path\":\"/pub/a\\\"\\n\\u0001\",\"hash\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\","
        "\"size\":3,\"ts\":5}\n\n";
    char out[600];
    CHECK(sseReplay((const char *)rec, len, UINT64_MAX, &all, out, sizeof(out), sizeof(out), &r) == SSE_DONE);
    CHECK(r.written == sizeof(want) - 1 && memcmp(out, want, r.written) == 0);
    CHECK(r.consumed == len && r.frames == 1 && r.lastSeq == 1 && r.frameSeq == 1 && r.frameUser == 36);
    CHECK(sseReplay((const char *)rec, len, UINT64_MAX, &all, out, r.written - 1, sizeof(out), &r) == SSE_MORE);
    CHECK(r.written == 0 && r.consumed == 0 && r.frames == 0);
    sseFilter bad = {NULL, "/", 1, 1, 1};
    CHECK(sseReplay((const char *)rec, len, 0, &bad, out, sizeof(out), 1, &r) == SSE_ERR && errno == EINVAL);

    /* fuzz: valid records with random bytes flipped, and pure random bytes, in exact-size heap blocks (ASan
     * catches any read past the input), into exact-size outputs of random capacity */
    for (int it = 0; it < 4000 * scale; it++) {
        size_t cap = rnd() % 3 ? rnd() % 700 : rnd() % 5000, n = 0, bufcap = 4096;
        unsigned char *buf = malloc(bufcap);
        int mode = (int)(rnd() % 3);
        if (mode == 2) {
            n = rnd() % 400;
            for (size_t i = 0; i < n; i++) buf[i] = (rnd() & 3) ? (unsigned char)rnd() : 0;
        } else {
            int nrec = (int)(rnd() % 6);
            for (int k = 0; k < nrec; k++) {
                unsigned char path[64];
                size_t plen = rnd() % 40, clen = rnd() % 8, vlen = rnd() % 30;
                for (size_t i = 0; i < plen; i++) path[i] = (unsigned char)rnd();
                if (plen >= 5 && (rnd() & 1)) memcpy(path, "/pub/", 5);
                n += sseRecord(buf + n, 1 + (int)(rnd() & 1), rnd(), rnd(), user, path, plen, clen, vlen);
            }
            if (mode == 1 && n) {
                int flips = 1 + (int)(rnd() % 4);
                for (int k = 0; k < flips; k++) buf[rnd() % n] = (unsigned char)rnd();
            }
            if (rnd() & 1) n -= rnd() % (n + 1);
        }
        unsigned char *in = malloc(n ? n : 1);
        memcpy(in, buf, n);
        char *o = malloc(cap ? cap : 1);
        const sseFilter *f = (rnd() & 1) ? &all : &mine;
        uint64_t until = (rnd() & 1) ? UINT64_MAX : rnd();
        int rc = sseReplay((const char *)in, n, until, f, o, cap, (size_t)(rnd() % (cap + 2)), &r);
        CHECK(rc == SSE_DONE || rc == SSE_MORE || rc == SSE_ERR);
        CHECK(r.written <= cap && r.consumed <= n);
        CHECK(r.frames == 0 || r.frameUser + SSE_USER_SIZE <= r.consumed);
        if (mode == 0 && until == UINT64_MAX && cap >= SSE_FRAME_MAX) CHECK(rc != SSE_ERR);
        free(o);
        free(in);
        free(buf);
    }
}

static void testSseSeparators(void) {
    static const char user[] = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u";
    sseFilter all = {NULL, "/", 1, 1, 0};
    sseResult r;
    unsigned char rec[512];
    /* U+2028, U+2029, U+0085 escaped; U+2027 and a lone 0xC2 0xA0 (U+00A0) raw */
    static const unsigned char path[] = "/pub/\xe2\x80\xa8\xe2\x80\xa9\xc2\x85\xe2\x80\xa7\xc2\xa0";
    size_t len = sseRecord(rec, 2, 9, 1, user, path, sizeof(path) - 1, 0, 0);
    char out[600];
    CHECK(sseReplay((const char *)rec, len, UINT64_MAX, &all, out, sizeof(out), sizeof(out), &r) == SSE_DONE);
    static const char want[] = "\"path\":\"/pub/\\u2028\\u2029\\u0085\xe2\x80\xa7\xc2\xa0\"";
    int found = 0;
    for (size_t i = 0; i + sizeof(want) - 1 <= r.written && !found; i++)
        found = memcmp(out + i, want, sizeof(want) - 1) == 0;
    CHECK(found);
}

/* ---- scan: the records a history request wants ---- */
static void testScan(int scale) {
    static const char a[] = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u";
    static const char b[] = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1y";
    unsigned char buf[4096];
    size_t n = 0;
    n += sseRecord(buf + n, 1, 1, 1, a, (const unsigned char *)"/priv/x", 7, 0, 2);
    n += sseRecord(buf + n, 1, 2, 1, b, (const unsigned char *)"/pub/y", 6, 0, 2);
    n += sseRecord(buf + n, 2, 3, 1, a, (const unsigned char *)"/pub/z", 6, 0, 0);
    uint64_t hits[4];
    scanResult r;
    scanFilter pub = {NULL, NULL, NULL, 0, "", 0, NULL};
    CHECK(scanRecords((const char *)buf, n, UINT64_MAX, &pub, 100, hits, 4, &r) == SCAN_DONE);
    CHECK(r.hits == 2 && r.examined == 3 && r.lastSeq == 3 && r.consumed == n);
    scanFilter mine = {NULL, NULL, NULL, 0, "/p", 2, a};
    CHECK(scanRecords((const char *)buf, n, UINT64_MAX, &mine, 100, hits, 4, &r) == SCAN_DONE && r.hits == 3);
    CHECK(scanRecords((const char *)buf, n, UINT64_MAX, &mine, 2, hits, 4, &r) == SCAN_MORE);
    CHECK(r.examined == 2 && r.hits == 2 && r.lastSeq == 2);
    char users[2 * SCAN_USER_SIZE];
    memcpy(users, a, SCAN_USER_SIZE);
    memcpy(users + SCAN_USER_SIZE, b, SCAN_USER_SIZE);
    uint64_t after[2] = {0, 5}, before[2] = {0, 0};
    scanFilter two = {users, after, before, 2, "", 0, NULL};
    CHECK(scanRecords((const char *)buf, n, UINT64_MAX, &two, 100, hits, 4, &r) == SCAN_DONE);
    CHECK(r.hits == 1 && hits[0] == n - (SCAN_HEADER_SIZE + 6));  /* b's record is at or before its cursor */
    scanFilter bad = {NULL, NULL, NULL, 1, "", 0, NULL};
    CHECK(scanRecords((const char *)buf, n, 0, &bad, 1, hits, 4, &r) == SCAN_ERR && errno == EINVAL);

    /* fuzz: random bytes and damaged records in exact-size heap blocks; hits never past maxHits */
    for (int it = 0; it < 4000 * scale; it++) {
        size_t m = 0, maxHits = rnd() % 5;
        unsigned char *tmp = malloc(2048);
        int nrec = (int)(rnd() % 6);
        for (int k = 0; k < nrec; k++) {
            unsigned char path[40];
            size_t plen = rnd() % 30;
            for (size_t i = 0; i < plen; i++) path[i] = (unsigned char)rnd();
            if (plen >= 5 && (rnd() & 1)) memcpy(path, "/pub/", 5);
            m += sseRecord(tmp + m, 1 + (int)(rnd() & 1), rnd() % 100, 1, (rnd() & 1) ? a : b, path, plen, 0,
                           rnd() % 20);
        }
        if (m && (rnd() & 1)) tmp[rnd() % m] = (unsigned char)rnd();
        if (rnd() & 1) m -= rnd() % (m + 1);
        unsigned char *in = malloc(m ? m : 1);
        memcpy(in, tmp, m);
        uint64_t *h = malloc((maxHits ? maxHits : 1) * sizeof(uint64_t));
        const scanFilter *f = (rnd() & 1) ? &pub : &two;
        int rc = scanRecords((const char *)in, m, (rnd() & 1) ? UINT64_MAX : rnd() % 100, f, rnd() % 8, h, maxHits,
                             &r);
        CHECK(rc == SCAN_DONE || rc == SCAN_MORE || rc == SCAN_ERR);
        CHECK(r.hits <= maxHits && r.consumed <= m);
        for (size_t i = 0; i < r.hits; i++) CHECK(h[i] + SCAN_HEADER_SIZE <= r.consumed);
        free(h);
        free(in);
        free(tmp);
    }
}

/* ---- verify: the signature-check pool, with a stand-in for libsodium ---- */
/* "valid" iff the message's first byte equals the key's first byte; writes the
 * whole output buffer so ASan checks the room the pool gives `open`. */
static int stubOpen(unsigned char *m, unsigned long long *mlen, const unsigned char *sm, unsigned long long smlen,
                    const unsigned char *pk) {
    if (smlen < VERIFY_SIGNATURE_BYTES) return -1;
    *mlen = smlen - VERIFY_SIGNATURE_BYTES;
    memcpy(m, sm + VERIFY_SIGNATURE_BYTES, *mlen);
    return (*mlen > 0 && m[0] == pk[0]) ? 0 : -1;
}

static size_t verifyCollect(verifyPool *p, unsigned char *seen, const unsigned char *expect, size_t n) {
    uint64_t tickets[16];
    uint8_t ok[16];
    struct pollfd pfd = {verifyNotifyFd(p), POLLIN, 0};
    CHECK(poll(&pfd, 1, 5000) == 1);
    verifyDrainNotify(p);
    size_t got = 0, k;
    while ((k = verifyHarvest(p, tickets, ok, 16)) > 0) {
        for (size_t i = 0; i < k; i++) {
            CHECK(tickets[i] < n);
            if (tickets[i] >= n) continue;
            seen[tickets[i]]++;
            CHECK(ok[i] == expect[tickets[i]]);
        }
        got += k;
        if (k < 16) break;
    }
    return got;
}

static void testVerify(int scale) {
    unsigned char pk[VERIFY_KEY_BYTES] = {'Y'}, sig[VERIFY_SIGNATURE_BYTES] = {0}, msg[300];
    size_t n = 2000 * (size_t)scale;
    unsigned char *seen = calloc(n, 1), *expect = calloc(n, 1);
    verifyPool *p = verifyNew(stubOpen, 4, 64);
    CHECK(p != NULL);
    if (!p) return;
    size_t answered = 0;
    for (size_t t = 0; t < n; t++) {
        size_t len = rnd() % sizeof(msg);
        for (size_t i = 0; i < len; i++) msg[i] = (unsigned char)rnd();
        if (len && rnd() % 2) msg[0] = 'Y';
        expect[t] = len > 0 && msg[0] == 'Y';
        while (!verifySubmit(p, t, sig, msg, len, pk)) {
            CHECK(errno == EAGAIN); /* capacity 64: wait for answers, then retry */
            answered += verifyCollect(p, seen, expect, n);
        }
    }
    while (answered < n) answered += verifyCollect(p, seen, expect, n);
    for (size_t t = 0; t < n; t++) CHECK(seen[t] == 1); /* every job answered exactly once */
    CHECK(verifyInFlight(p) == 0);

    /* out of memory: submit says ENOMEM and the pool is unchanged and usable */
    failAt(1);
    msg[0] = 'Y';
    CHECK(verifySubmit(p, 0, sig, msg, 10, pk) == 0 && errno == ENOMEM);
    oomSeen++;
    CHECK(verifyNow(p, sig, msg, 10, pk) == 1); /* the failed allocation was the first only */
    failAt(1);
    CHECK(verifyNow(p, sig, msg, 10, pk) == -1 && errno == ENOMEM);
    oomSeen++;
    failAt(-1);
    CHECK(verifyInFlight(p) == 0);
    memset(seen, 0, n);
    expect[0] = 1;
    CHECK(verifySubmit(p, 0, sig, msg, 10, pk) == 1);
    CHECK(verifyCollect(p, seen, expect, n) == 1 && seen[0] == 1);

    /* limits: the longest message is accepted, one byte more is EINVAL */
    unsigned char *big = calloc(65537, 1);
    big[0] = 'Y';
    CHECK(verifyNow(p, sig, big, 65536, pk) == 1);
    CHECK(verifySubmit(p, 1, sig, big, 65537, pk) == 0 && errno == EINVAL);
    CHECK(verifyNow(p, sig, big, 65537, pk) == -1 && errno == EINVAL);
    free(big);

    /* freeing with jobs queued drops them without leaking */
    for (size_t t = 0; t < 50; t++) CHECK(verifySubmit(p, t, sig, msg, 10, pk) == 1);
    verifyFree(p);
    verifyFree(NULL);

    /* construction: bad arguments, and out of memory */
    CHECK(verifyNew(NULL, 1, 1) == NULL && errno == EINVAL);
    CHECK(verifyNew(stubOpen, 0, 1) == NULL && errno == EINVAL);
    CHECK(verifyNew(stubOpen, 65, 1) == NULL && errno == EINVAL);
    CHECK(verifyNew(stubOpen, 1, 0) == NULL && errno == EINVAL);
    failAt(1);
    CHECK(verifyNew(stubOpen, 2, 8) == NULL && errno == ENOMEM);
    oomSeen++;
    failAt(-1);
    free(seen);
    free(expect);
}

int main(int argc, char **argv) {
    int scale = argc > 1 ? atoi(argv[1]) : 1;
    if (scale < 1) scale = 1;
    testHashes(scale);
    testTrie(scale);
    testSubidx(scale);
    testBloom(scale);
    testRiblt(scale);
    testSse(scale);
    testSseSeparators();
    testScan(scale);
    testVerify(scale);
    failAt(-1);
    CHECK(allocLive == 0);
    CHECK(oomSeen > 100);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok: crc32c, murmur3, trie, bloom, riblt, sse, scan, subidx, verify (scale %d, %ld injected allocation failures survived, "
           "live allocations %ld)\n", scale, oomSeen, allocLive);
    return 0;
}
