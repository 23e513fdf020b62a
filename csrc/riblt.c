/* riblt.c -- rateless IBLT coded symbols.  See riblt.h for the picture, the
 * walk every implementation must reproduce, and the wire form. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "riblt.h"

#define RIBLT_GOLDEN 0x9e3779b97f4a7c15ULL
#define RIBLT_END UINT64_MAX
#define RIBLT_INDEX_LIMIT ((uint64_t)1 << 31)

typedef unsigned __int128 ribltU128;

static inline uint64_t ribltMix(uint64_t z) {
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ULL;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z;
}

uint32_t ribltCheck(uint64_t salt, uint64_t key) { return (uint32_t)ribltMix(key ^ salt); }

typedef struct ribltWalk {
    uint64_t state;
    uint64_t idx;
} ribltWalk;

static inline void ribltWalkStart(ribltWalk *w, uint64_t salt, uint64_t key) {
    w->state = ribltMix(key ^ salt ^ RIBLT_GOLDEN);
    w->idx = 0;
}

/* (j+1)(j+2) * r > (i+1)(i+2) * 2^64, for i, j < 2^31 */
static inline int ribltPast(uint64_t j, uint64_t r, ribltU128 lhs) {
    return (ribltU128)((j + 1) * (j + 2)) * r > lhs;
}

static inline uint64_t ribltWalkNext(ribltWalk *w) {
    uint64_t i = w->idx;
    if (i == RIBLT_END) return RIBLT_END;
    w->state += RIBLT_GOLDEN;
    uint64_t r = ribltMix(w->state);
    if (r == 0) r = 1;
    /* estimate j + 1.5 ~ (i + 1.5) / sqrt(r / 2^64), then settle it exactly */
    double est = ((double)i + 1.5) / sqrt((double)r * 5.421010862427522e-20) - 1.5;
    if (!(est < (double)RIBLT_INDEX_LIMIT)) {
        w->idx = RIBLT_END;
        return RIBLT_END;
    }
    uint64_t j = est < (double)(i + 1) ? i + 1 : (uint64_t)est;
    ribltU128 lhs = (ribltU128)((i + 1) * (i + 2)) << 64;
    while (j > i + 1 && ribltPast(j - 1, r, lhs)) j--;
    while (!ribltPast(j, r, lhs)) {
        j++;
        if (j >= RIBLT_INDEX_LIMIT) {
            w->idx = RIBLT_END;
            return RIBLT_END;
        }
    }
    w->idx = j;
    return j;
}

static inline void ribltApply(ribltSymbol *y, uint64_t key, uint32_t chk, int64_t sign) {
    y->key ^= key;
    y->check ^= chk;
    y->count += sign;
}

/* Add sign * key to symbols [from, to). */
static void ribltApplyRange(riblt *s, uint64_t key, int64_t sign, size_t from, size_t to) {
    uint32_t chk = ribltCheck(s->salt, key);
    ribltWalk w;
    ribltWalkStart(&w, s->salt, key);
    uint64_t i = 0;
    while (i < from) i = ribltWalkNext(&w);
    while (i < to) {
        ribltApply(&s->sym[i], key, chk, sign);
        i = ribltWalkNext(&w);
    }
}

static int ribltReserve(riblt *s, size_t n) {
    if (n <= s->cap) return 1;
    if (n > RIBLT_MAX_SYMBOLS) {
        errno = EINVAL;
        return 0;
    }
    size_t cap = s->cap ? s->cap : 16;
    while (cap < n) cap *= 2;
    ribltSymbol *y = hsRealloc(s->sym, cap * sizeof(ribltSymbol));
    if (!y) {
        errno = ENOMEM;
        return 0;
    }
    memset(y + s->cap, 0, (cap - s->cap) * sizeof(ribltSymbol));
    s->sym = y;
    s->cap = cap;
    return 1;
}

riblt *ribltNew(uint64_t salt, size_t n) {
    if (n > RIBLT_MAX_SYMBOLS) {
        errno = EINVAL;
        return NULL;
    }
    riblt *s = hsMalloc(sizeof(*s));
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    s->salt = salt;
    s->n = 0;
    s->cap = 0;
    s->sym = NULL;
    if (!ribltReserve(s, n ? n : 1)) {
        hsFree(s);
        return NULL;
    }
    s->n = n;
    return s;
}

riblt *ribltCopy(const riblt *s, size_t n) {
    if (n > s->n) {
        errno = EINVAL;
        return NULL;
    }
    riblt *c = ribltNew(s->salt, n);
    if (c && n) memcpy(c->sym, s->sym, n * sizeof(ribltSymbol));
    return c;
}

void ribltFree(riblt *s) {
    if (!s) return;
    hsFree(s->sym);
    hsFree(s);
}

void ribltUpdate(riblt *s, uint64_t key, int64_t sign) { ribltApplyRange(s, key, sign, 0, s->n); }

void ribltUpdateMany(riblt *s, const uint64_t *keys, size_t nkeys, int64_t sign) {
    for (size_t k = 0; k < nkeys; k++) ribltApplyRange(s, keys[k], sign, 0, s->n);
}

int ribltExtend(riblt *s, size_t n, const uint64_t *keys, size_t nkeys) {
    if (n <= s->n) return 1;
    if (!ribltReserve(s, n)) return 0;
    size_t from = s->n;
    memset(s->sym + from, 0, (n - from) * sizeof(ribltSymbol));
    s->n = n;
    for (size_t k = 0; k < nkeys; k++) ribltApplyRange(s, keys[k], 1, from, n);
    return 1;
}

int ribltSubtract(riblt *a, const riblt *b) {
    if (b->n < a->n || a->salt != b->salt) {
        errno = EINVAL;
        return 0;
    }
    for (size_t i = 0; i < a->n; i++) {
        a->sym[i].key ^= b->sym[i].key;
        a->sym[i].check ^= b->sym[i].check;
        a->sym[i].count -= b->sym[i].count;
    }
    return 1;
}

int ribltIsEmpty(const riblt *s) {
    for (size_t i = 0; i < s->n; i++)
        if (s->sym[i].key || s->sym[i].check || s->sym[i].count) return 0;
    return 1;
}

static inline int ribltPure(const riblt *s, size_t i) {
    const ribltSymbol *y = &s->sym[i];
    if (y->count != 1 && y->count != -1) return 0;
    return ribltCheck(s->salt, y->key) == y->check;
}

/* Does key's walk pass through index i? */
static int ribltWalkHits(uint64_t salt, uint64_t key, uint64_t i) {
    ribltWalk w;
    ribltWalkStart(&w, salt, key);
    uint64_t j = 0;
    while (j < i) j = ribltWalkNext(&w);
    return j == i;
}

int ribltDecode(riblt *s, uint64_t *onlyA, size_t capA, size_t *nA,
                uint64_t *onlyB, size_t capB, size_t *nB) {
    size_t m = s->n, na = 0, nb = 0, top = 0;
    *nA = 0;
    *nB = 0;
    if (m == 0) return 1;
    size_t *stack = hsMalloc(m * sizeof(size_t));
    unsigned char *queued = hsCalloc(m, 1);
    if (!stack || !queued) {
        hsFree(stack);
        hsFree(queued);
        errno = ENOMEM;
        return 0;
    }
    for (size_t i = m; i-- > 0;)
        if (ribltPure(s, i)) {
            stack[top++] = i;
            queued[i] = 1;
        }
    int full = 0;
    while (top) {
        size_t i = stack[--top];
        queued[i] = 0;
        if (!ribltPure(s, i)) continue;
        uint64_t key = s->sym[i].key;
        int64_t sign = s->sym[i].count;
        if (!ribltWalkHits(s->salt, key, i)) continue;
        if (sign == 1) {
            if (na == capA) { full = 1; break; }
            onlyA[na++] = key;
        } else {
            if (nb == capB) { full = 1; break; }
            onlyB[nb++] = key;
        }
        uint32_t chk = ribltCheck(s->salt, key);
        ribltWalk w;
        ribltWalkStart(&w, s->salt, key);
        for (uint64_t j = 0; j < m; j = ribltWalkNext(&w)) {
            ribltApply(&s->sym[j], key, chk, -sign);
            if (!queued[j] && ribltPure(s, j)) {
                stack[top++] = j;
                queued[j] = 1;
            }
        }
    }
    hsFree(stack);
    hsFree(queued);
    *nA = na;
    *nB = nb;
    if (full) {
        errno = ERANGE;
        return 0;
    }
    errno = 0;
    return ribltIsEmpty(s);
}

int ribltSerialize(const riblt *s, size_t start, size_t count, unsigned char *out, size_t cap, size_t *written) {
    if (start > s->n || count > s->n - start) {
        errno = EINVAL;
        return 0;
    }
    size_t need = 0;
    for (size_t i = start; i < start + count; i++) {
        int64_t c = s->sym[i].count;
        uint64_t z = ((uint64_t)c << 1) ^ (uint64_t)(c >> 63);
        need += 12;
        do {
            need++;
            z >>= 7;
        } while (z);
    }
    *written = need;
    if (need > cap) {
        errno = ERANGE;
        return 0;
    }
    unsigned char *p = out;
    for (size_t i = start; i < start + count; i++) {
        const ribltSymbol *y = &s->sym[i];
        for (int b = 0; b < 8; b++) *p++ = (unsigned char)(y->key >> (8 * b));
        for (int b = 0; b < 4; b++) *p++ = (unsigned char)(y->check >> (8 * b));
        uint64_t z = ((uint64_t)y->count << 1) ^ (uint64_t)(y->count >> 63);
        while (z >= 0x80) {
            *p++ = (unsigned char)(z | 0x80);
            z >>= 7;
        }
        *p++ = (unsigned char)z;
    }
    return 1;
}

/* Parse one symbol at p (len bytes left); bytes used, or 0 if malformed. */
static size_t ribltParse(const unsigned char *p, size_t len, ribltSymbol *y) {
    if (len < 13) return 0;
    uint64_t key = 0, z = 0;
    uint32_t chk = 0;
    for (int b = 0; b < 8; b++) key |= (uint64_t)p[b] << (8 * b);
    for (int b = 0; b < 4; b++) chk |= (uint32_t)p[8 + b] << (8 * b);
    size_t at = 12;
    for (int shift = 0;; shift += 7) {
        if (at >= len || shift > 63) return 0;
        unsigned char c = p[at++];
        if (shift == 63 && (c & 0x7e)) return 0; /* more than 64 bits */
        z |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) break;
    }
    y->key = key;
    y->check = chk;
    y->count = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    y->unused = 0;
    return at;
}

int ribltAppendSymbols(riblt *s, const void *buf, size_t len, size_t *added) {
    const unsigned char *p = buf;
    size_t count = 0, at = 0;
    ribltSymbol y;
    while (at < len) { /* first pass: validate and count */
        size_t used = ribltParse(p + at, len - at, &y);
        if (!used) {
            errno = EINVAL;
            return 0;
        }
        at += used;
        count++;
    }
    if (count > RIBLT_MAX_SYMBOLS - s->n) {
        errno = EINVAL;
        return 0;
    }
    if (!ribltReserve(s, s->n + count)) return 0;
    at = 0;
    for (size_t i = 0; i < count; i++) at += ribltParse(p + at, len - at, &s->sym[s->n + i]);
    s->n += count;
    if (added) *added = count;
    return 1;
}
