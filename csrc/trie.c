/* trie.c -- compressed trie of subscription patterns.  See trie.h for the
 * picture and the contract.  Every change builds the new node(s) first and
 * only then swaps them in, so a failed allocation leaves the tree as it was. */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "trie.h"

#define TRIE_BIG_EXACT 1u
#define TRIE_BIG_PREFIX 2u

struct trieNode {
    uint32_t labelLen;
    uint16_t nchild;
    uint8_t flags;       /* TRIE_BIG_* : that kind's ids live in a trieIdSet */
    uint8_t unused;
    uint32_t count[2];   /* ids of each kind */
    unsigned char data[];
};

typedef struct trieIdSet {
    uint32_t count;
    uint32_t mask;       /* capacity - 1, capacity a power of two */
    uint32_t slot[];     /* TRIE_NO_ID = empty */
} trieIdSet;

/* ---- node layout ---- */

static inline size_t trieAlign8(size_t x) { return (x + 7) & ~(size_t)7; }

static inline unsigned char *trieLabel(trieNode *n) { return n->data; }
static inline unsigned char *trieChildBytes(trieNode *n) { return n->data + n->labelLen; }
static inline size_t triePtrOffset(uint32_t labelLen, uint16_t nchild) {
    return trieAlign8(sizeof(trieNode) + labelLen + nchild);
}
static inline trieNode **trieChildren(trieNode *n) {
    return (trieNode **)(void *)((char *)n + triePtrOffset(n->labelLen, n->nchild));
}
static inline int trieIsBig(const trieNode *n, int kind) { return (n->flags >> kind) & 1u; }

/* Where the storage of `kind` starts: a trieIdSet* when big, else inline ids. */
static inline char *trieIdArea(trieNode *n, int kind) {
    char *p = (char *)n + triePtrOffset(n->labelLen, n->nchild) + sizeof(trieNode *) * n->nchild;
    int bigE = trieIsBig(n, TRIE_EXACT), bigP = trieIsBig(n, TRIE_PREFIX);
    /* order: [set ptr exact?][set ptr prefix?][inline exact][inline prefix] */
    if (kind == TRIE_EXACT) {
        if (bigE) return p;
        return p + 8 * (bigE + bigP);
    }
    if (bigP) return p + 8 * bigE;
    return p + 8 * (bigE + bigP) + (bigE ? 0 : 4 * (size_t)n->count[TRIE_EXACT]);
}
static inline trieIdSet *trieGetSet(trieNode *n, int kind) {
    trieIdSet *s;
    memcpy(&s, trieIdArea(n, kind), sizeof(s));
    return s;
}
static inline void trieSetSet(trieNode *n, int kind, trieIdSet *s) { memcpy(trieIdArea(n, kind), &s, sizeof(s)); }
static inline uint32_t *trieInline(trieNode *n, int kind) { return (uint32_t *)(void *)trieIdArea(n, kind); }

static size_t trieNodeSize(uint32_t labelLen, uint16_t nchild, unsigned flags, uint32_t ce, uint32_t cp) {
    size_t s = triePtrOffset(labelLen, nchild) + sizeof(trieNode *) * nchild;
    s += (flags & TRIE_BIG_EXACT) ? 8 : 4 * (size_t)ce;
    s += (flags & TRIE_BIG_PREFIX) ? 8 : 4 * (size_t)cp;
    return s;
}

static trieNode *trieNodeAlloc(uint32_t labelLen, uint16_t nchild, unsigned flags, uint32_t ce, uint32_t cp) {
    trieNode *n = hsMalloc(trieNodeSize(labelLen, nchild, flags, ce, cp));
    if (!n) return NULL;
    n->labelLen = labelLen;
    n->nchild = nchild;
    n->flags = (uint8_t)flags;
    n->unused = 0;
    n->count[TRIE_EXACT] = ce;
    n->count[TRIE_PREFIX] = cp;
    return n;
}

/* Copy the id storage of `kind` from src to dst (same representation and count). */
static void trieCopyIds(trieNode *dst, trieNode *src, int kind) {
    if (trieIsBig(src, kind))
        trieSetSet(dst, kind, trieGetSet(src, kind));
    else
        memcpy(trieInline(dst, kind), trieInline(src, kind), 4 * (size_t)src->count[kind]);
}

/* ---- id sets ---- */

static inline uint32_t trieHashId(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static trieIdSet *trieIdSetNew(uint32_t cap) {
    trieIdSet *s = hsMalloc(sizeof(trieIdSet) + sizeof(uint32_t) * (size_t)cap);
    if (!s) return NULL;
    s->count = 0;
    s->mask = cap - 1;
    memset(s->slot, 0xff, sizeof(uint32_t) * (size_t)cap);
    return s;
}

static int trieIdSetHas(const trieIdSet *s, uint32_t id) {
    for (uint32_t i = trieHashId(id) & s->mask;; i = (i + 1) & s->mask) {
        if (s->slot[i] == id) return 1;
        if (s->slot[i] == TRIE_NO_ID) return 0;
    }
}

/* Add an id known to be absent, with room known to be there. */
static void trieIdSetPut(trieIdSet *s, uint32_t id) {
    uint32_t i = trieHashId(id) & s->mask;
    while (s->slot[i] != TRIE_NO_ID) i = (i + 1) & s->mask;
    s->slot[i] = id;
    s->count++;
}

/* Remove with backward shift (no tombstones).  1 removed, 0 absent. */
static int trieIdSetDel(trieIdSet *s, uint32_t id) {
    uint32_t i = trieHashId(id) & s->mask;
    while (s->slot[i] != id) {
        if (s->slot[i] == TRIE_NO_ID) return 0;
        i = (i + 1) & s->mask;
    }
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        if (s->slot[j] == TRIE_NO_ID) break;
        uint32_t home = trieHashId(s->slot[j]) & s->mask;
        /* move slot[j] into the hole at i unless its home lies cyclically in (i, j] */
        if (((j - home) & s->mask) >= ((j - i) & s->mask)) {
            s->slot[i] = s->slot[j];
            i = j;
        }
    }
    s->slot[i] = TRIE_NO_ID;
    s->count--;
    return 1;
}

/* ---- node helpers ---- */

static void trieNodeFree(trieNode *n) {
    if (trieIsBig(n, TRIE_EXACT)) hsFree(trieGetSet(n, TRIE_EXACT));
    if (trieIsBig(n, TRIE_PREFIX)) hsFree(trieGetSet(n, TRIE_PREFIX));
    hsFree(n);
}

static void trieFreeRec(trieNode *n) {
    trieNode **ch = trieChildren(n);
    for (uint16_t i = 0; i < n->nchild; i++) trieFreeRec(ch[i]);
    trieNodeFree(n);
}

/* Index of the child whose label starts with byte c, or -1; *ins = where it would go. */
static inline int trieFindChild(trieNode *n, unsigned char c, int *ins) {
    const unsigned char *cb = trieChildBytes(n);
    int lo = 0, hi = n->nchild;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (cb[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (ins) *ins = lo;
    return (lo < n->nchild && cb[lo] == c) ? lo : -1;
}

static int trieHasId(trieNode *n, int kind, uint32_t id) {
    if (trieIsBig(n, kind)) return trieIdSetHas(trieGetSet(n, kind), id);
    const uint32_t *v = trieInline(n, kind);
    for (uint32_t i = 0; i < n->count[kind]; i++)
        if (v[i] == id) return 1;
    return 0;
}

static inline int trieNodeEmpty(const trieNode *n) { return n->count[0] == 0 && n->count[1] == 0; }

/* A copy of n with its label, children and ids; label replaced by (label,len)
 * and one extra inline id of `kind` when addKind >= 0.  The copy takes over
 * n's big sets (n must then be freed with hsFree, not trieNodeFree). */
static trieNode *trieNodeRebuild(trieNode *n, const unsigned char *label, uint32_t labelLen,
                                 int addKind, uint32_t addId) {
    uint32_t ce = n->count[TRIE_EXACT] + (addKind == TRIE_EXACT);
    uint32_t cp = n->count[TRIE_PREFIX] + (addKind == TRIE_PREFIX);
    trieNode *m = trieNodeAlloc(labelLen, n->nchild, n->flags, ce, cp);
    if (!m) return NULL;
    memcpy(trieLabel(m), label, labelLen);
    memcpy(trieChildBytes(m), trieChildBytes(n), n->nchild);
    memcpy(trieChildren(m), trieChildren(n), sizeof(trieNode *) * n->nchild);
    /* m->count already holds the final counts, so each inline area sits where it must */
    trieCopyIds(m, n, TRIE_EXACT);
    if (addKind == TRIE_EXACT) trieInline(m, TRIE_EXACT)[n->count[TRIE_EXACT]] = addId;
    trieCopyIds(m, n, TRIE_PREFIX);
    if (addKind == TRIE_PREFIX) trieInline(m, TRIE_PREFIX)[n->count[TRIE_PREFIX]] = addId;
    return m;
}

static trieNode *trieNewLeaf(const unsigned char *label, uint32_t len, int kind, uint32_t id) {
    trieNode *n = trieNodeAlloc(len, 0, 0, kind == TRIE_EXACT, kind == TRIE_PREFIX);
    if (!n) return NULL;
    memcpy(trieLabel(n), label, len);
    trieInline(n, kind)[0] = id;
    return n;
}

/* Add id (absent) of kind to the node at *slot. */
static int trieNodeAddId(trie *t, trieNode **slot, int kind, uint32_t id) {
    trieNode *n = *slot;
    if (trieIsBig(n, kind)) {
        trieIdSet *s = trieGetSet(n, kind);
        if ((uint64_t)(s->count + 1) * 4 > (uint64_t)(s->mask + 1) * 3) {
            uint64_t cap = (uint64_t)(s->mask + 1) * 2;
            if (cap > ((uint64_t)1 << 31)) {
                errno = ENOMEM;
                return 0;
            }
            trieIdSet *g = trieIdSetNew((uint32_t)cap);
            if (!g) {
                errno = ENOMEM;
                return 0;
            }
            for (uint32_t i = 0; i <= s->mask; i++)
                if (s->slot[i] != TRIE_NO_ID) trieIdSetPut(g, s->slot[i]);
            hsFree(s);
            trieSetSet(n, kind, g);
            s = g;
        }
        trieIdSetPut(s, id);
        n->count[kind]++;
        t->entries++;
        return 1;
    }
    if (n->count[kind] < TRIE_INLINE_IDS) {
        trieNode *m = trieNodeRebuild(n, trieLabel(n), n->labelLen, kind, id);
        if (!m) {
            errno = ENOMEM;
            return 0;
        }
        hsFree(n);
        *slot = m;
        t->entries++;
        return 1;
    }
    /* inline -> big set */
    trieIdSet *s = trieIdSetNew(32);
    if (!s) {
        errno = ENOMEM;
        return 0;
    }
    unsigned flags = n->flags | (1u << kind);
    uint32_t ce = n->count[TRIE_EXACT], cp = n->count[TRIE_PREFIX];
    trieNode *m = trieNodeAlloc(n->labelLen, n->nchild, flags, ce, cp);
    if (!m) {
        hsFree(s);
        errno = ENOMEM;
        return 0;
    }
    memcpy(trieLabel(m), trieLabel(n), n->labelLen);
    memcpy(trieChildBytes(m), trieChildBytes(n), n->nchild);
    memcpy(trieChildren(m), trieChildren(n), sizeof(trieNode *) * n->nchild);
    const uint32_t *old = trieInline(n, kind);
    for (uint32_t i = 0; i < n->count[kind]; i++) trieIdSetPut(s, old[i]);
    trieIdSetPut(s, id);
    int other = 1 - kind;
    trieCopyIds(m, n, other);
    trieSetSet(m, kind, s);
    m->count[kind] = s->count;
    hsFree(n);
    *slot = m;
    t->entries++;
    return 1;
}

/* ---- public API ---- */

trie *trieNew(void) {
    trie *t = hsMalloc(sizeof(*t));
    if (!t) {
        errno = ENOMEM;
        return NULL;
    }
    t->root = trieNodeAlloc(0, 0, 0, 0, 0);
    if (!t->root) {
        hsFree(t);
        errno = ENOMEM;
        return NULL;
    }
    t->entries = 0;
    t->nodes = 1;
    return t;
}

void trieFree(trie *t) {
    if (!t) return;
    trieFreeRec(t->root);
    hsFree(t);
}

uint64_t trieSize(const trie *t) { return t->entries; }
uint64_t trieNodeCount(const trie *t) { return t->nodes; }

int trieInsert(trie *t, const void *keyv, size_t len, int kind, uint32_t id) {
    const unsigned char *key = keyv;
    if ((kind != TRIE_EXACT && kind != TRIE_PREFIX) || id == TRIE_NO_ID || len > UINT32_MAX) {
        errno = EINVAL;
        return 0;
    }
    trieNode **slot = &t->root;
    size_t pos = 0;
    for (;;) {
        trieNode *n = *slot;
        if (pos == len) {
            if (trieHasId(n, kind, id)) {
                errno = 0;
                return 0;
            }
            return trieNodeAddId(t, slot, kind, id);
        }
        int ins;
        int ci = trieFindChild(n, key[pos], &ins);
        if (ci < 0) {
            trieNode *leaf = trieNewLeaf(key + pos, (uint32_t)(len - pos), kind, id);
            if (!leaf) {
                errno = ENOMEM;
                return 0;
            }
            if (n->nchild == 256) { /* cannot happen: 256 distinct first bytes at most */
                hsFree(leaf);
                errno = EINVAL;
                return 0;
            }
            trieNode *m = trieNodeAlloc(n->labelLen, (uint16_t)(n->nchild + 1), n->flags,
                                        n->count[TRIE_EXACT], n->count[TRIE_PREFIX]);
            if (!m) {
                hsFree(leaf);
                errno = ENOMEM;
                return 0;
            }
            memcpy(trieLabel(m), trieLabel(n), n->labelLen);
            unsigned char *cbm = trieChildBytes(m), *cbn = trieChildBytes(n);
            trieNode **chm = trieChildren(m), **chn = trieChildren(n);
            memcpy(cbm, cbn, (size_t)ins);
            cbm[ins] = key[pos];
            memcpy(cbm + ins + 1, cbn + ins, (size_t)(n->nchild - ins));
            memcpy(chm, chn, sizeof(trieNode *) * (size_t)ins);
            chm[ins] = leaf;
            memcpy(chm + ins + 1, chn + ins, sizeof(trieNode *) * (size_t)(n->nchild - ins));
            trieCopyIds(m, n, TRIE_EXACT);
            trieCopyIds(m, n, TRIE_PREFIX);
            hsFree(n);
            *slot = m;
            t->entries++;
            t->nodes++;
            return 1;
        }
        trieNode **cslot = &trieChildren(n)[ci];
        trieNode *c = *cslot;
        size_t room = len - pos, lim = c->labelLen < room ? c->labelLen : room;
        const unsigned char *cl = trieLabel(c);
        size_t common = 1; /* the first byte matched by trieFindChild */
        while (common < lim && cl[common] == key[pos + common]) common++;
        if (common == c->labelLen) {
            slot = cslot;
            pos += common;
            continue;
        }
        /* split c at `common`: split node [label[0:common]] -> rest [label[common:]] (+ a leaf) */
        trieNode *rest = trieNodeRebuild(c, cl + common, (uint32_t)(c->labelLen - common), -1, 0);
        if (!rest) {
            errno = ENOMEM;
            return 0;
        }
        int ends = (pos + common == len);
        trieNode *leaf = NULL;
        if (!ends) {
            leaf = trieNewLeaf(key + pos + common, (uint32_t)(len - pos - common), kind, id);
            if (!leaf) {
                hsFree(rest);
                errno = ENOMEM;
                return 0;
            }
        }
        trieNode *split = trieNodeAlloc((uint32_t)common, (uint16_t)(ends ? 1 : 2), 0,
                                        ends && kind == TRIE_EXACT, ends && kind == TRIE_PREFIX);
        if (!split) {
            hsFree(rest);
            hsFree(leaf);
            errno = ENOMEM;
            return 0;
        }
        memcpy(trieLabel(split), cl, common);
        unsigned char *cb = trieChildBytes(split);
        trieNode **ch = trieChildren(split);
        if (ends) {
            cb[0] = cl[common];
            ch[0] = rest;
            trieInline(split, kind)[0] = id;
        } else {
            unsigned char rb = cl[common], lb = key[pos + common];
            int first = rb < lb;
            cb[0] = first ? rb : lb;
            ch[0] = first ? rest : leaf;
            cb[1] = first ? lb : rb;
            ch[1] = first ? leaf : rest;
        }
        hsFree(c); /* its big sets now belong to `rest` */
        *cslot = split;
        t->entries++;
        t->nodes += ends ? 1 : 2;
        return 1;
    }
}

int trieInsertMany(trie *t, const void *keysv, const uint64_t *offsets, const uint8_t *kinds,
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
        if (trieInsert(t, keys + offsets[i], (size_t)(offsets[i + 1] - offsets[i]), kinds[i], ids[i])) {
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

/* Merge the node at *slot with its only child when it carries no ids (not the
 * root).  Skipped silently when memory is short: the tree stays correct. */
static void trieTryMerge(trie *t, trieNode **slot, int isRoot) {
    trieNode *n = *slot;
    if (isRoot || n->nchild != 1 || !trieNodeEmpty(n)) return;
    trieNode *c = trieChildren(n)[0];
    uint64_t ll = (uint64_t)n->labelLen + c->labelLen;
    if (ll > UINT32_MAX) return;
    trieNode *m = trieNodeAlloc((uint32_t)ll, c->nchild, c->flags, c->count[0], c->count[1]);
    if (!m) return;
    memcpy(trieLabel(m), trieLabel(n), n->labelLen);
    memcpy(trieLabel(m) + n->labelLen, trieLabel(c), c->labelLen);
    memcpy(trieChildBytes(m), trieChildBytes(c), c->nchild);
    memcpy(trieChildren(m), trieChildren(c), sizeof(trieNode *) * c->nchild);
    trieCopyIds(m, c, TRIE_EXACT);
    trieCopyIds(m, c, TRIE_PREFIX);
    /* n's own (empty) big sets, if any, go */
    if (trieIsBig(n, TRIE_EXACT)) hsFree(trieGetSet(n, TRIE_EXACT));
    if (trieIsBig(n, TRIE_PREFIX)) hsFree(trieGetSet(n, TRIE_PREFIX));
    hsFree(n);
    hsFree(c);
    *slot = m;
    t->nodes--;
}

int trieRemove(trie *t, const void *keyv, size_t len, int kind, uint32_t id) {
    const unsigned char *key = keyv;
    if (kind != TRIE_EXACT && kind != TRIE_PREFIX) {
        errno = EINVAL;
        return 0;
    }
    trieNode **slot = &t->root, **pslot = NULL;
    size_t pos = 0;
    for (;;) {
        trieNode *n = *slot;
        if (pos == len) break;
        int ci = trieFindChild(n, key[pos], NULL);
        if (ci < 0) {
            errno = 0;
            return 0;
        }
        trieNode *c = trieChildren(n)[ci];
        if (c->labelLen > len - pos || memcmp(trieLabel(c), key + pos, c->labelLen) != 0) {
            errno = 0;
            return 0;
        }
        pslot = slot;
        slot = &trieChildren(n)[ci];
        pos += c->labelLen;
    }
    trieNode *n = *slot;
    if (trieIsBig(n, kind)) {
        if (!trieIdSetDel(trieGetSet(n, kind), id)) {
            errno = 0;
            return 0;
        }
    } else {
        uint32_t *v = trieInline(n, kind), c = n->count[kind], i;
        for (i = 0; i < c && v[i] != id; i++) {
        }
        if (i == c) {
            errno = 0;
            return 0;
        }
        /* in place: the block keeps 4 bytes of slack, harmlessly; the prefix
         * inline ids follow the exact ones and move down with them */
        if (kind == TRIE_EXACT && !trieIsBig(n, TRIE_PREFIX)) {
            memmove(v + i, v + i + 1, 4 * (size_t)(c - i - 1) + 4 * (size_t)n->count[TRIE_PREFIX]);
        } else {
            memmove(v + i, v + i + 1, 4 * (size_t)(c - i - 1));
        }
    }
    n->count[kind]--;
    t->entries--;
    errno = 0;

    /* tidy: an empty leaf goes; a lone-child empty node merges with its child */
    if (pslot && trieNodeEmpty(n) && n->nchild == 0) {
        trieNode *p = *pslot;
        int ci = trieFindChild(p, trieLabel(n)[0], NULL);
        trieNode *m = trieNodeAlloc(p->labelLen, (uint16_t)(p->nchild - 1), p->flags, p->count[0], p->count[1]);
        if (m) {
            memcpy(trieLabel(m), trieLabel(p), p->labelLen);
            unsigned char *cbm = trieChildBytes(m), *cbp = trieChildBytes(p);
            trieNode **chm = trieChildren(m), **chp = trieChildren(p);
            memcpy(cbm, cbp, (size_t)ci);
            memcpy(cbm + ci, cbp + ci + 1, (size_t)(p->nchild - ci - 1));
            memcpy(chm, chp, sizeof(trieNode *) * (size_t)ci);
            memcpy(chm + ci, chp + ci + 1, sizeof(trieNode *) * (size_t)(p->nchild - ci - 1));
            trieCopyIds(m, p, TRIE_EXACT);
            trieCopyIds(m, p, TRIE_PREFIX);
            hsFree(p);
            trieNodeFree(n);
            *pslot = m;
            t->nodes--;
            trieTryMerge(t, pslot, pslot == &t->root);
        }
    } else if (pslot) {
        trieTryMerge(t, slot, 0);
    }
    errno = 0;
    return 1;
}

/* ---- matching ---- */

trieMatchBuf *trieMatchBufNew(size_t cap) {
    trieMatchBuf *b = hsMalloc(sizeof(*b));
    if (!b) {
        errno = ENOMEM;
        return NULL;
    }
    b->ids = NULL;
    b->seen = NULL;
    b->cap = 0;
    b->seenMask = 0;
    b->gen = 1;
    if (!trieMatchBufReserve(b, cap < 16 ? 16 : cap)) {
        hsFree(b);
        return NULL;
    }
    return b;
}

int trieMatchBufReserve(trieMatchBuf *b, size_t cap) {
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

void trieMatchBufFree(trieMatchBuf *b) {
    if (!b) return;
    hsFree(b->ids);
    hsFree(b->seen);
    hsFree(b);
}

typedef struct trieCollect {
    trieMatchBuf *b;
    size_t n;       /* distinct ids stored */
    size_t extra;   /* ids not looked at because the buffer was full */
    uint64_t tag;   /* gen << 32 */
} trieCollect;

static inline void trieEmit(trieCollect *c, uint32_t id) {
    trieMatchBuf *b = c->b;
    uint64_t want = c->tag | id;
    size_t i = trieHashId(id) & b->seenMask;
    for (;;) {
        uint64_t s = b->seen[i];
        if (s == want) return;                       /* seen in this call */
        if ((s & 0xffffffff00000000ULL) != c->tag) break; /* stale: empty */
        i = (i + 1) & b->seenMask;
    }
    if (c->n == b->cap) {
        c->extra++;
        return;
    }
    b->seen[i] = want;
    b->ids[c->n++] = id;
}

static void trieEmitList(trieCollect *c, trieNode *n, int kind) {
    uint32_t cnt = n->count[kind];
    if (!cnt) return;
    if (c->n + cnt > c->b->cap && c->n == c->b->cap) {
        c->extra += cnt;
        return;
    }
    if (trieIsBig(n, kind)) {
        trieIdSet *s = trieGetSet(n, kind);
        for (uint32_t i = 0; i <= s->mask; i++)
            if (s->slot[i] != TRIE_NO_ID) trieEmit(c, s->slot[i]);
    } else {
        const uint32_t *v = trieInline(n, kind);
        for (uint32_t i = 0; i < cnt; i++) trieEmit(c, v[i]);
    }
}

/* One walk down a trie for one key.  The two walks of trieMatchPair advance
 * in turns, and each prefetches the next node before emitting the ids of the
 * current one, so the cache misses of the two tries overlap instead of adding
 * up (at a million entries the walk is bound by memory latency). */
typedef struct trieWalk {
    trieNode *next;              /* node whose label is still to be checked, or NULL: finished */
    const unsigned char *key;
    size_t len, pos;
} trieWalk;

static inline void trieWalkStart(trieWalk *w, const trie *t, const void *key, size_t len) {
    w->next = t ? t->root : NULL;
    w->key = key;
    w->len = len;
    w->pos = 0;
}

static inline void trieWalkStep(trieCollect *c, trieWalk *w) {
    trieNode *n = w->next;
    if (n->labelLen) {
        if (n->labelLen > w->len - w->pos || memcmp(trieLabel(n), w->key + w->pos, n->labelLen) != 0) {
            w->next = NULL;
            return;
        }
        w->pos += n->labelLen;
    }
    trieNode *child = NULL;
    if (w->pos < w->len) {
        int ci = trieFindChild(n, w->key[w->pos], NULL);
        if (ci >= 0) {
            child = trieChildren(n)[ci];
            __builtin_prefetch(child);
        }
    }
    trieEmitList(c, n, TRIE_PREFIX);
    if (w->pos == w->len) trieEmitList(c, n, TRIE_EXACT);
    w->next = child;
}

static void trieCollectKeys(trieCollect *c, trieWalk *a, trieWalk *b) {
    while (a->next || b->next) {
        if (a->next) trieWalkStep(c, a);
        if (b->next) trieWalkStep(c, b);
    }
}

static void trieCollectBegin(trieCollect *c, trieMatchBuf *b) {
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

int trieMatch(const trie *t, const void *key, size_t len, trieMatchBuf *buf, size_t *count) {
    trieCollect c;
    trieWalk a, b;
    trieCollectBegin(&c, buf);
    trieWalkStart(&a, t, key, len);
    trieWalkStart(&b, NULL, NULL, 0);
    trieCollectKeys(&c, &a, &b);
    *count = c.n + c.extra;
    if (c.extra) {
        errno = ERANGE;
        return 0;
    }
    return 1;
}

size_t trieMatchPair(const trie *a, const void *keyA, size_t lenA,
                     const trie *b, const void *keyB, size_t lenB, trieMatchBuf *buf) {
    trieCollect c;
    trieWalk wa, wb;
    trieCollectBegin(&c, buf);
    trieWalkStart(&wa, a, keyA, lenA);
    trieWalkStart(&wb, b, keyB, lenB);
    trieCollectKeys(&c, &wa, &wb);
    return c.n + c.extra;
}
