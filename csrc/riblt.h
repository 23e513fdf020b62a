/* riblt.h -- rateless invertible Bloom lookup table over 64-bit keys
 * (coded symbols as in Yang, Gilad, Alizadeh, "Practical Rateless Set
 * Reconciliation", SIGCOMM 2024; the code here is written from the paper's
 * description, not copied).
 *
 *  coded symbol i:  key  = XOR of the keys mapped to i
 *                   check= XOR of check(key)           (32-bit keyed hash)
 *                   count= (#keys of A) - (#keys of B) mapped to i
 *
 *  index:   0    1    2    3    4    5    6    7  ...
 *  key x:   ●    ●         ●              ●       (x's walk: 0, 1, 3, 7, ...)
 *  key y:   ●         ●         ●                 (y's walk: 0, 2, 4, ...)
 *
 * Every key maps to symbol 0 and to symbol i with probability 2 / (i + 2),
 * so a prefix of any length m is a good IBLT for about m / 1.4 differences:
 * the sender streams symbols until the receiver decodes, with no estimate of
 * the difference beforehand.
 *
 * The walk of key x (both sides must compute it bit for bit; all integer):
 *   mix(z)   = splitmix64 finaliser:  z ^= z >> 30; z *= 0xbf58476d1ce4e5b9;
 *              z ^= z >> 27; z *= 0x94d049bb133111eb; z ^= z >> 31
 *   check(x) = low 32 bits of mix(x ^ salt)
 *   state    = mix(x ^ salt ^ 0x9e3779b97f4a7c15);  first index 0
 *   next index after i: state += 0x9e3779b97f4a7c15; r = mix(state) (0 -> 1);
 *              j = the smallest j > i with (j+1)(j+2) * r > (i+1)(i+2) * 2^64
 *   (indices beyond 2^31 are never produced; sketches are far smaller)
 *
 * Peeling: a symbol is pure when count = +1 or -1, check(key) equals its
 * check field, and key's walk passes through that index; its key is then
 * removed from every symbol of its walk below m, which may make others pure.
 * Decoding is complete only when every symbol ends at zero.
 *
 * Wire form of a run of symbols (ribltSerialize / ribltAppendSymbols), per
 * symbol, little-endian:  key u64 (8) | check u32 (4) | count, zigzag LEB128
 * varint (1-3 bytes for realistic sets).  No header: the caller frames it.
 *
 * Contract: int results 1 / 0 with errno (ENOMEM, EINVAL, ERANGE) and the
 * sketch unchanged on failure; every allocation through alloc.h.
 */
#ifndef HOMESTREAM_RIBLT_H
#define HOMESTREAM_RIBLT_H

#include <stddef.h>
#include <stdint.h>

#define RIBLT_MAX_SYMBOLS ((size_t)1 << 30)
#define RIBLT_SYMBOL_MAX_BYTES 22 /* 8 + 4 + a 10-byte varint */

typedef struct ribltSymbol {
    uint64_t key;
    int64_t count;
    uint32_t check;
    uint32_t unused;
} ribltSymbol;

typedef struct riblt {
    uint64_t salt;
    size_t n;        /* coded symbols held: indices 0 .. n-1 */
    size_t cap;
    ribltSymbol *sym;
} riblt;

uint32_t ribltCheck(uint64_t salt, uint64_t key);

/* The first n symbols of the empty set. */
riblt *ribltNew(uint64_t salt, size_t n);
/* A copy holding the first n symbols of s (n <= s->n). */
riblt *ribltCopy(const riblt *s, size_t n);
void ribltFree(riblt *s);

/* Add (sign +1) or delete (sign -1) keys in the symbols held. */
void ribltUpdate(riblt *s, uint64_t key, int64_t sign);
void ribltUpdateMany(riblt *s, const uint64_t *keys, size_t nkeys, int64_t sign);

/* Grow to n symbols; keys[] must be the whole set the symbols encode (their
 * contributions to the new indices are added). */
int ribltExtend(riblt *s, size_t n, const uint64_t *keys, size_t nkeys);

/* a -= b over a's symbols; b must hold at least a->n and have a's salt. */
int ribltSubtract(riblt *a, const riblt *b);

/* Peel s in place.  Keys with count +1 go to onlyA, -1 to onlyB (at most cap
 * each).  Returns 1 when complete (every symbol zero), 0 otherwise (errno 0:
 * more symbols needed; ENOMEM: nothing done; ERANGE: output full). */
int ribltDecode(riblt *s, uint64_t *onlyA, size_t capA, size_t *nA,
                uint64_t *onlyB, size_t capB, size_t *nB);

/* Symbols [start, start + count) in wire form into out (cap bytes).  1 with
 * *written; 0 + ERANGE with *written = bytes needed; 0 + EINVAL bad range. */
int ribltSerialize(const riblt *s, size_t start, size_t count, unsigned char *out, size_t cap, size_t *written);

/* Parse wire symbols from buf and append them after s's last symbol.  The
 * whole buffer must be whole symbols (else 0 + EINVAL, nothing appended). */
int ribltAppendSymbols(riblt *s, const void *buf, size_t len, size_t *added);

/* 1 when every symbol is zero. */
int ribltIsEmpty(const riblt *s);

#endif
