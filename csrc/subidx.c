/* subidx.c -- hash table of '/'-terminated prefixes.  See subidx.h for the
 * picture and the contract.  Every change that needs memory gets it first and
 * only then modifies the table, so a failed allocation leaves it as it was. */
#include <errno.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "alloc.h"
#include "subidx.h"
#include "murmur3.h"

#define SUBIDX_BIG_EXACT 1u
#define SUBIDX_BIG_PREFIX 2u
#define SUBIDX_BATCH 32 /* probes resolved together (keys with more '/' take several rounds) */

struct subidxEntry {
    uint32_t keyLen;
    uint32_t flags;      /* SUBIDX_BIG_* : that kind's ids live in a subidxIdSet */
    uint32_t count[2];   /* ids of each kind */
    unsigned char data[]; /* key bytes, pad to 8, [exact area][prefix area] */
};

typedef struct subidxIdSet {
    uint32_t count;
    uint32_t mask;       /* capacity - 1, capacity a power of two */
    uint32_t slot[];     /* SUBIDX_NO_ID = empty */
} subidxIdSet;

/* ---- hashing: murmur3-style word mixing, one finalisation per prefix ---- */

static inline uint64_t subidxMixWord(uint64_t h, uint64_t w) {
    w *= 0x87c37b91114253d5ULL;
    w = murmur3Rotl64(w, 31);
    w *= 0x4cf5ad432745937fULL;
    h ^= w;
    h = murmur3Rotl64(h, 27);
    return h * 5 + 0x52dce729;
}

/* Running state over the full words of one key; hashes of its prefixes. */
typedef struct subidxHasher {
    const unsigned char *key;
    size_t words;        /* full words mixed into h */
    uint64_t h;
} subidxHasher;

static inline void subidxHasherInit(subidxHasher *g, uint64_t seed, const unsigned char *key) {
    g->key = key;
    g->words = 0;
    g->h = seed;
}

/* Hash of key[0 .. L), L never below a previous call's. */
static inline uint64_t subidxHashPrefix(subidxHasher *g, size_t L) {
    size_t nw = L >> 3;
    uint64_t h = g->h;
    for (size_t i = g->words; i < nw; i++) {
        uint64_t w;
        memcpy(&w, g->key + 8 * i, 8);
        h = subidxMixWord(h, w);
    }
    g->h = h;
    g->words = nw;
    uint64_t t = 0;
    size_t r = L & 7;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (r && L >= 8) { /* the last 8 bytes of the prefix, shifted down to its r tail bytes: no call */
        memcpy(&t, g->key + L - 8, 8);
        t >>= 64 - 8 * r;
    } else
#endif
    {
        for (size_t j = 0; j < r; j++) t |= (uint64_t)g->key[8 * nw + j] << (8 * j);
    }
    t *= 0x4cf5ad432745937fULL;
    t = murmur3Rotl64(t, 33);
    t *= 0x87c37b91114253d5ULL;
    return murmur3Fmix64(h ^ t ^ (uint64_t)L);
}

static uint64_t subidxHash(uint64_t seed, const unsigned char *key, size_t len) {
    subidxHasher g;
    subidxHasherInit(&g, seed, key);
    return subidxHashPrefix(&g, len);
}

/* ---- entry layout ---- */

static inline size_t subidxAlign8(size_t x) { return (x + 7) & ~(size_t)7; }
static inline size_t subidxIdsOff(uint32_t keyLen) { return subidxAlign8(sizeof(subidxEntry) + keyLen); }
static inline int subidxIsBig(const subidxEntry *e, int kind) { return (e->flags >> kind) & 1u; }
static inline size_t subidxAreaSize(unsigned flags, int kind, uint32_t count) {
    return ((flags >> kind) & 1u) ? 8 : 4 * (size_t)count;
}
static inline char *subidxArea(subidxEntry *e, int kind) {
    char *p = (char *)e + subidxIdsOff(e->keyLen);
    return kind == SUBIDX_EXACT ? p : p + subidxAreaSize(e->flags, SUBIDX_EXACT, e->count[SUBIDX_EXACT]);
}
static inline size_t subidxEntrySize(uint32_t keyLen, unsigned flags, uint32_t ce, uint32_t cp) {
    return subidxIdsOff(keyLen) + subidxAreaSize(flags, SUBIDX_EXACT, ce) + subidxAreaSize(flags, SUBIDX_PREFIX, cp);
}
static inline subidxIdSet *subidxGetSet(subidxEntry *e, int kind) {
    subidxIdSet *s;
    memcpy(&s, subidxArea(e, kind), sizeof(s));
    return s;
}
static inline void subidxPutSet(subidxEntry *e, int kind, subidxIdSet *s) { memcpy(subidxArea(e, kind), &s, sizeof(s)); }
static inline uint32_t subidxInlineGet(subidxEntry *e, int kind, uint32_t i) {
    uint32_t v;
    memcpy(&v, subidxArea(e, kind) + 4 * (size_t)i, 4);
    return v;
}
static inline void subidxInlineSet(subidxEntry *e, int kind, uint32_t i, uint32_t v) {
    memcpy(subidxArea(e, kind) + 4 * (size_t)i, &v, 4);
}

/* ---- id sets ---- */

static inline uint32_t subidxHashId(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static subidxIdSet *subidxIdSetNew(uint32_t cap) {
    subidxIdSet *s = hsMalloc(sizeof(subidxIdSet) + sizeof(uint32_t) * (size_t)cap);
    if (!s) return NULL;
    s->count = 0;
    s->mask = cap - 1;
    memset(s->slot, 0xff, sizeof(uint32_t) * (size_t)cap);
    return s;
}

static int subidxIdSetHas(const subidxIdSet *s, uint32_t id) {
    for (uint32_t i = subidxHashId(id) & s->mask;; i = (i + 1) & s->mask) {
        if (s->slot[i] == id) return 1;
        if (s->slot[i] == SUBIDX_NO_ID) return 0;
    }
}

/* Add an id known to be absent, with room known to be there. */
static void subidxIdSetPut(subidxIdSet *s, uint32_t id) {
    uint32_t i = subidxHashId(id) & s->mask;
    while (s->slot[i] != SUBIDX_NO_ID) i = (i + 1) & s->mask;
    s->slot[i] = id;
    s->count++;
}

/* Remove with backward shift (no tombstones).  1 removed, 0 absent. */
static int subidxIdSetDel(subidxIdSet *s, uint32_t id) {
    uint32_t i = subidxHashId(id) & s->mask;
    while (s->slot[i] != id) {
        if (s->slot[i] == SUBIDX_NO_ID) return 0;
        i = (i + 1) & s->mask;
    }
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        if (s->slot[j] == SUBIDX_NO_ID) break;
        uint32_t home = subidxHashId(s->slot[j]) & s->mask;
        if (((j - home) & s->mask) >= ((j - i) & s->mask)) {
            s->slot[i] = s->slot[j];
            i = j;
        }
    }
    s->slot[i] = SUBIDX_NO_ID;
    s->count--;
    return 1;
}

/* ---- entries ---- */

static int subidxEntryHas(subidxEntry *e, int kind, uint32_t id) {
    if (subidxIsBig(e, kind)) return subidxIdSetHas(subidxGetSet(e, kind), id);
    for (uint32_t i = 0; i < e->count[kind]; i++)
        if (subidxInlineGet(e, kind, i) == id) return 1;
    return 0;
}

static void subidxEntryFree(subidxEntry *e) {
    if (subidxIsBig(e, SUBIDX_EXACT)) hsFree(subidxGetSet(e, SUBIDX_EXACT));
    if (subidxIsBig(e, SUBIDX_PREFIX)) hsFree(subidxGetSet(e, SUBIDX_PREFIX));
    hsFree(e);
}

static subidxEntry *subidxEntryNew(const unsigned char *key, uint32_t len, int kind, uint32_t id) {
    subidxEntry *e = hsMalloc(subidxEntrySize(len, 0, kind == SUBIDX_EXACT, kind == SUBIDX_PREFIX));
    if (!e) return NULL;
    e->keyLen = len;
    e->flags = 0;
    e->count[SUBIDX_EXACT] = kind == SUBIDX_EXACT;
    e->count[SUBIDX_PREFIX] = kind == SUBIDX_PREFIX;
    if (len) memcpy(e->data, key, len);
    subidxInlineSet(e, kind, 0, id);
    return e;
}

/* Add id (absent) of kind to the entry of slot i.  The block may move. */
static int subidxEntryAddId(subidx *s, uint64_t i, int kind, uint32_t id) {
    subidxEntry *e = s->slots[i].e;
    uint32_t ce = e->count[SUBIDX_EXACT], cp = e->count[SUBIDX_PREFIX];
    if (subidxIsBig(e, kind)) {
        subidxIdSet *set = subidxGetSet(e, kind);
        if ((uint64_t)(set->count + 1) * 4 > (uint64_t)(set->mask + 1) * 3) {
            uint64_t cap = (uint64_t)(set->mask + 1) * 2;
            subidxIdSet *g = cap > ((uint64_t)1 << 31) ? NULL : subidxIdSetNew((uint32_t)cap);
            if (!g) {
                errno = ENOMEM;
                return 0;
            }
            for (uint32_t j = 0; j <= set->mask; j++)
                if (set->slot[j] != SUBIDX_NO_ID) subidxIdSetPut(g, set->slot[j]);
            hsFree(set);
            subidxPutSet(e, kind, g);
            set = g;
        }
        subidxIdSetPut(set, id);
        e->count[kind]++;
        s->entries++;
        return 1;
    }
    if (e->count[kind] < SUBIDX_INLINE_IDS) {
        size_t old = subidxEntrySize(e->keyLen, e->flags, ce, cp);
        subidxEntry *m = hsRealloc(e, old + 4);
        if (!m) {
            errno = ENOMEM;
            return 0;
        }
        e = m;
        s->slots[i].e = e;
        if (kind == SUBIDX_EXACT) {
            char *pa = subidxArea(e, SUBIDX_PREFIX); /* still at the old place: counts unchanged */
            memmove(pa + 4, pa, subidxAreaSize(e->flags, SUBIDX_PREFIX, cp));
        }
        subidxInlineSet(e, kind, e->count[kind], id);
        e->count[kind]++;
        s->entries++;
        return 1;
    }
    /* inline -> big set: the area shrinks from 4 * SUBIDX_INLINE_IDS to 8 bytes, no realloc */
    subidxIdSet *set = subidxIdSetNew(32);
    if (!set) {
        errno = ENOMEM;
        return 0;
    }
    for (uint32_t j = 0; j < e->count[kind]; j++) subidxIdSetPut(set, subidxInlineGet(e, kind, j));
    subidxIdSetPut(set, id);
    if (kind == SUBIDX_EXACT) {
        char *pa = subidxArea(e, SUBIDX_PREFIX);
        char *area = subidxArea(e, SUBIDX_EXACT);
        memmove(area + 8, pa, subidxAreaSize(e->flags, SUBIDX_PREFIX, cp));
    }
    e->flags |= 1u << kind;
    e->count[kind] = set->count;
    subidxPutSet(e, kind, set);
    s->entries++;
    return 1;
}

/* Remove id of kind from e (never allocates).  1 removed, 0 absent. */
static int subidxEntryDelId(subidxEntry *e, int kind, uint32_t id) {
    if (subidxIsBig(e, kind)) {
        subidxIdSet *set = subidxGetSet(e, kind);
        if (!subidxIdSetDel(set, id)) return 0;
        e->count[kind]--;
        if (set->count == 0) { /* back to an empty inline area (0 bytes) */
            hsFree(set);
            if (kind == SUBIDX_EXACT) {
                char *area = subidxArea(e, SUBIDX_EXACT);
                char *pa = subidxArea(e, SUBIDX_PREFIX);
                memmove(area, pa, subidxAreaSize(e->flags, SUBIDX_PREFIX, e->count[SUBIDX_PREFIX]));
            }
            e->flags &= ~(1u << kind);
        }
        return 1;
    }
    uint32_t n = e->count[kind];
    for (uint32_t j = 0; j < n; j++) {
        if (subidxInlineGet(e, kind, j) != id) continue;
        subidxInlineSet(e, kind, j, subidxInlineGet(e, kind, n - 1));
        if (kind == SUBIDX_EXACT) {
            char *pa = subidxArea(e, SUBIDX_PREFIX);
            memmove(pa - 4, pa, subidxAreaSize(e->flags, SUBIDX_PREFIX, e->count[SUBIDX_PREFIX]));
        }
        e->count[kind]--;
        return 1;
    }
    return 0;
}

/* ---- the table ---- */

/* Slot of key, or the empty slot where it would go (*found = 0). */
static uint64_t subidxFind(const subidx *s, uint64_t h, const unsigned char *key, size_t len, int *found) {
    for (uint64_t i = h & s->mask;; i = (i + 1) & s->mask) {
        const subidxSlot *sl = &s->slots[i];
        if (!sl->e) {
            *found = 0;
            return i;
        }
        if (sl->hash == h && sl->e->keyLen == len && (len == 0 || memcmp(sl->e->data, key, len) == 0)) {
            *found = 1;
            return i;
        }
    }
}

/* Ask for transparent huge pages under a big slot array (a lookup's slot is
 * then one cache miss, not a TLB miss too).  Advice only: nothing if refused. */
static void subidxAdviseHuge(void *p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (bytes < 2 * huge) return;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), b = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

static int subidxGrow(subidx *s) {
    uint64_t cap = (s->mask + 1) * 2;
    if (cap > SIZE_MAX / sizeof(subidxSlot)) return 0;
    subidxSlot *n = hsCalloc((size_t)cap, sizeof(subidxSlot));
    if (!n) return 0;
    subidxAdviseHuge(n, (size_t)cap * sizeof(subidxSlot));
    uint64_t mask = cap - 1;
    for (uint64_t i = 0; i <= s->mask; i++) {
        if (!s->slots[i].e) continue;
        uint64_t j = s->slots[i].hash & mask;
        while (n[j].e) j = (j + 1) & mask;
        n[j] = s->slots[i];
    }
    hsFree(s->slots);
    s->slots = n;
    s->mask = mask;
    return 1;
}

/* Empty slot i with backward shift (no tombstones). */
static void subidxDelSlot(subidx *s, uint64_t i) {
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        if (!s->slots[j].e) break;
        uint64_t home = s->slots[j].hash & s->mask;
        if (((j - home) & s->mask) >= ((j - i) & s->mask)) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i].e = NULL;
    s->slots[i].hash = 0;
    s->keys--;
}

/* ---- public API ---- */

subidx *subidxNew(uint64_t seed) {
    subidx *s = hsMalloc(sizeof(*s));
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    s->slots = hsCalloc(16, sizeof(subidxSlot));
    if (!s->slots) {
        hsFree(s);
        errno = ENOMEM;
        return NULL;
    }
    s->mask = 15;
    s->keys = 0;
    s->entries = 0;
    s->seed = seed;
    return s;
}

void subidxFree(subidx *s) {
    if (!s) return;
    for (uint64_t i = 0; i <= s->mask; i++)
        if (s->slots[i].e) subidxEntryFree(s->slots[i].e);
    hsFree(s->slots);
    hsFree(s);
}

uint64_t subidxSize(const subidx *s) { return s->entries; }
uint64_t subidxKeyCount(const subidx *s) { return s->keys; }

int subidxInsert(subidx *s, const void *keyv, size_t len, int kind, uint32_t id) {
    const unsigned char *key = keyv;
    if ((kind != SUBIDX_EXACT && kind != SUBIDX_PREFIX) || id == SUBIDX_NO_ID || len > UINT32_MAX ||
        (kind == SUBIDX_PREFIX && (len == 0 || key[len - 1] != SUBIDX_SEP))) {
        errno = EINVAL;
        return 0;
    }
    uint64_t h = subidxHash(s->seed, key, len);
    int found;
    uint64_t i = subidxFind(s, h, key, len, &found);
    if (found) {
        if (subidxEntryHas(s->slots[i].e, kind, id)) {
            errno = 0;
            return 0;
        }
        return subidxEntryAddId(s, i, kind, id);
    }
    subidxEntry *e = subidxEntryNew(key, (uint32_t)len, kind, id);
    if (!e) {
        errno = ENOMEM;
        return 0;
    }
    if ((s->keys + 1) * 2 > s->mask + 1) {
        if (!subidxGrow(s)) {
            hsFree(e);
            errno = ENOMEM;
            return 0;
        }
        i = subidxFind(s, h, key, len, &found);
    }
    s->slots[i].hash = h;
    s->slots[i].e = e;
    s->keys++;
    s->entries++;
    return 1;
}

int subidxInsertMany(subidx *s, const void *keysv, const uint64_t *offsets, const uint8_t *kinds,
                     const uint32_t *ids, size_t n, size_t *added, size_t *done) {
    const unsigned char *keys = keysv;
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        if (offsets[i + 1] < offsets[i]) {
            errno = EINVAL;
            if (added) *added = got;
            if (done) *done = i;
            return 0;
        }
        if (subidxInsert(s, keys + offsets[i], (size_t)(offsets[i + 1] - offsets[i]), kinds[i], ids[i])) {
            got++;
        } else if (errno != 0) {
            if (added) *added = got;
            if (done) *done = i;
            return 0;
        }
    }
    if (added) *added = got;
    if (done) *done = n;
    return 1;
}

int subidxRemove(subidx *s, const void *keyv, size_t len, int kind, uint32_t id) {
    const unsigned char *key = keyv;
    if (kind != SUBIDX_EXACT && kind != SUBIDX_PREFIX) {
        errno = EINVAL;
        return 0;
    }
    errno = 0;
    int found;
    uint64_t i = subidxFind(s, subidxHash(s->seed, key, len), key, len, &found);
    if (!found) return 0;
    subidxEntry *e = s->slots[i].e;
    if (!subidxEntryDelId(e, kind, id)) return 0;
    s->entries--;
    if (e->count[SUBIDX_EXACT] == 0 && e->count[SUBIDX_PREFIX] == 0) {
        subidxEntryFree(e);
        subidxDelSlot(s, i);
    }
    return 1;
}

/* ---- matching ---- */

subidxMatchBuf *subidxMatchBufNew(size_t cap) {
    subidxMatchBuf *b = hsMalloc(sizeof(*b));
    if (!b) {
        errno = ENOMEM;
        return NULL;
    }
    b->ids = NULL;
    b->seen = NULL;
    b->cap = 0;
    b->seenMask = 0;
    b->gen = 1;
    if (!subidxMatchBufReserve(b, cap < 16 ? 16 : cap)) {
        hsFree(b);
        return NULL;
    }
    return b;
}

int subidxMatchBufReserve(subidxMatchBuf *b, size_t cap) {
    if (cap <= b->cap) return 1;
    size_t want = 16;
    while (want < cap) {
        if (want > SIZE_MAX / 64) {
            errno = ENOMEM;
            return 0;
        }
        want *= 2;
    }
    uint32_t *ids = hsMalloc(sizeof(uint32_t) * want);
    uint64_t *seen = hsCalloc(want * 2, sizeof(uint64_t));
    if (!ids || !seen) {
        hsFree(ids);
        hsFree(seen);
        errno = ENOMEM;
        return 0;
    }
    hsFree(b->ids);
    hsFree(b->seen);
    b->ids = ids;
    b->seen = seen;
    b->cap = want;
    b->seenMask = want * 2 - 1;
    b->gen = 1;
    return 1;
}

void subidxMatchBufFree(subidxMatchBuf *b) {
    if (!b) return;
    hsFree(b->ids);
    hsFree(b->seen);
    hsFree(b);
}

typedef struct subidxCollect {
    subidxMatchBuf *b;
    size_t n;       /* distinct ids stored */
    size_t extra;   /* ids not looked at because the buffer was full */
    uint64_t tag;   /* gen << 32 */
} subidxCollect;

static void subidxCollectBegin(subidxCollect *c, subidxMatchBuf *b) {
    b->gen++;
    if (b->gen == 0) { /* wrapped: forget every stamp */
        memset(b->seen, 0, sizeof(uint64_t) * (b->seenMask + 1));
        b->gen = 1;
    }
    c->b = b;
    c->n = 0;
    c->extra = 0;
    c->tag = (uint64_t)b->gen << 32;
}

static inline void subidxEmit(subidxCollect *c, uint32_t id) {
    subidxMatchBuf *b = c->b;
    uint64_t want = c->tag | id;
    size_t i = subidxHashId(id) & b->seenMask;
    for (;;) {
        uint64_t v = b->seen[i];
        if (v == want) return;                              /* seen in this call */
        if ((v & 0xffffffff00000000ULL) != c->tag) break;   /* stale: empty */
        i = (i + 1) & b->seenMask;
    }
    if (c->n == b->cap) {
        c->extra++;
        return;
    }
    b->seen[i] = want;
    b->ids[c->n++] = id;
}

static void subidxEmitKind(subidxCollect *c, subidxEntry *e, int kind) {
    uint32_t cnt = e->count[kind];
    if (!cnt) return;
    if (c->n == c->b->cap) {
        c->extra += cnt;
        return;
    }
    if (subidxIsBig(e, kind)) {
        subidxIdSet *set = subidxGetSet(e, kind);
        for (uint32_t i = 0; i <= set->mask; i++)
            if (set->slot[i] != SUBIDX_NO_ID) subidxEmit(c, set->slot[i]);
    } else {
        const char *p = subidxArea(e, kind);
        for (uint32_t i = 0; i < cnt; i++) {
            uint32_t v;
            memcpy(&v, p + 4 * (size_t)i, 4);
            subidxEmit(c, v);
        }
    }
}

/* The probes of one key: its '/'-terminated prefixes, then the key itself. */
typedef struct subidxKeyWalk {
    const subidx *s;
    const unsigned char *key;
    size_t len, pos;
    int done;
    subidxHasher g;
} subidxKeyWalk;

typedef struct subidxProbe {
    const subidx *s;
    const unsigned char *key;
    uint64_t hash;
    size_t len;
    int full;               /* the whole key: EXACT ids count too */
    subidxEntry *e;         /* found (hash equal), key still to check */
    uint64_t slot;
} subidxProbe;

static inline void subidxWalkStart(subidxKeyWalk *w, const subidx *s, const void *key, size_t len) {
    w->s = s;
    w->key = key;
    w->len = len;
    w->pos = 0;
    w->done = !s || s->keys == 0;
    if (s) subidxHasherInit(&w->g, s->seed, key);
}

static inline void subidxWalkNext(subidxKeyWalk *w, subidxProbe *p) {
    size_t L = w->pos;
    while (L < w->len && w->key[L] != SUBIDX_SEP) L++;
    L = L < w->len ? L + 1 : w->len;
    w->pos = L;
    p->full = L == w->len;
    w->done = p->full;
    p->s = w->s;
    p->key = w->key;
    p->len = L;
    p->hash = subidxHashPrefix(&w->g, L);
    p->e = NULL;
    __builtin_prefetch(&w->s->slots[p->hash & w->s->mask]);
}

/* Resolve p: its entry (key checked) or NULL, probing on from p->slot. */
static subidxEntry *subidxProbeCheck(subidxProbe *p) {
    const subidx *s = p->s;
    subidxEntry *e = p->e;
    uint64_t i = p->slot;
    while (e) {
        if (e->keyLen == p->len && (p->len == 0 || memcmp(e->data, p->key, p->len) == 0)) return e;
        /* a 64-bit hash collision: look further */
        for (;;) {
            i = (i + 1) & s->mask;
            e = s->slots[i].e;
            if (!e || s->slots[i].hash == p->hash) break;
        }
    }
    return NULL;
}

static void subidxCollectKeys(subidxCollect *c, subidxKeyWalk *a, subidxKeyWalk *b) {
    subidxProbe probe[SUBIDX_BATCH];
    while (!a->done || !b->done) {
        size_t n = 0;
        /* 1. hashes of the probes of both keys, in turns; prefetch their slots */
        while (n < SUBIDX_BATCH && (!a->done || !b->done)) {
            if (!a->done) subidxWalkNext(a, &probe[n++]);
            if (!b->done && n < SUBIDX_BATCH) subidxWalkNext(b, &probe[n++]);
        }
        /* 2. probe the slots; prefetch the entries whose hash matches */
        for (size_t k = 0; k < n; k++) {
            subidxProbe *p = &probe[k];
            const subidx *s = p->s;
            for (uint64_t i = p->hash & s->mask;; i = (i + 1) & s->mask) {
                subidxEntry *e = s->slots[i].e;
                if (!e) break;
                if (s->slots[i].hash == p->hash) {
                    p->e = e;
                    p->slot = i;
                    __builtin_prefetch(e);
                    __builtin_prefetch((const char *)e + 64);
                    __builtin_prefetch((const char *)e + 128);
                    break;
                }
            }
        }
        /* 3. check the keys and emit */
        for (size_t k = 0; k < n; k++) {
            subidxProbe *p = &probe[k];
            if (!p->e) continue;
            subidxEntry *e = subidxProbeCheck(p);
            if (!e) continue;
            subidxEmitKind(c, e, SUBIDX_PREFIX);
            if (p->full) subidxEmitKind(c, e, SUBIDX_EXACT);
        }
    }
}

int subidxMatch(const subidx *s, const void *key, size_t len, subidxMatchBuf *buf, size_t *count) {
    subidxCollect c;
    subidxKeyWalk a, b;
    subidxCollectBegin(&c, buf);
    subidxWalkStart(&a, s, key, len);
    subidxWalkStart(&b, NULL, NULL, 0);
    subidxCollectKeys(&c, &a, &b);
    *count = c.n + c.extra;
    if (c.extra) {
        errno = ERANGE;
        return 0;
    }
    return 1;
}

size_t subidxMatchPair(const subidx *a, const void *keyA, size_t lenA,
                       const subidx *b, const void *keyB, size_t lenB, subidxMatchBuf *buf) {
    subidxCollect c;
    subidxKeyWalk wa, wb;
    subidxCollectBegin(&c, buf);
    subidxWalkStart(&wa, a, keyA, lenA);
    subidxWalkStart(&wb, b, keyB, lenB);
    subidxCollectKeys(&c, &wa, &wb);
    return c.n + c.extra;
}
