/* subidx.h -- the subscription index: a hash table of '/'-terminated prefixes,
 * the "trie" of SPEC 3.1 flattened so that a lookup costs one batch of
 * overlapping cache misses instead of a chain of ~15 dependent ones.
 *
 * Entries are (key bytes, kind, id).  A PREFIX entry's key must end with
 * SUBIDX_SEP ('/'): every prefix pattern of SPEC 3.1 does (`<user>/pub/a/`
 * then a star is the PREFIX key "<user>/pub/a/"; a lone star is the PREFIX
 * key "/" of the path index).  So the PREFIX entries matching a key K are found among the
 * '/'-terminated prefixes of K, and the EXACT entries under K itself:
 *
 *   K = "u/pub/a/b.json"   probes:  "u/"  "u/pub/"  "u/pub/a/"  "u/pub/a/b.json"
 *                                    P     P         P           P + E
 *
 *   slots (open addressing, linear probing, power of two, load <= 1/2)
 *   +------------------+------------------+------------------+-----
 *   | hash64 | entry * | hash64 | NULL    | hash64 | entry * | ...      16 bytes each,
 *   +------------------+------------------+------------------+-----     4 to a cache line
 *        |                                     |
 *        v                                     v
 *   [hdr 16][key bytes][pad 8][exact ids][prefix ids]   one heap block per key
 *
 * Each kind's ids live inline (up to SUBIDX_INLINE_IDS) or, past that, in an
 * open-addressing id set whose pointer takes the place of the inline ids, so a
 * pattern with a million subscribers still adds and removes in O(1).
 *
 * Hashing is incremental (one 8-byte word at a time, a finalisation per
 * prefix), so all the hashes of a key cost about one pass over its bytes.
 * Matching computes the hashes of every probe of both keys (user+path in one
 * index, path in the other), prefetches all their slots, then probes, then
 * prefetches the entries found, then checks their keys and emits their ids:
 * two rounds of memory latency whatever the number of entries.  Cost
 * O(len(K) + matches), as SPEC 3.1 asks of its tries.  Ids are deduplicated
 * per call through a caller-owned subidxMatchBuf (a generation-stamped hash
 * set): no allocation per call, nothing that grows with the index.
 *
 * Contract (rax style, as trie.h):
 * - int results: 1 done, 0 not done; a 0 with errno == 0 is a no-op
 *   (inserting an entry that exists, removing one that does not), a 0 with
 *   errno == ENOMEM / EINVAL is a failure that changed nothing.
 * - ids are 0 .. 2^32-2 (UINT32_MAX is reserved: EINVAL); a PREFIX key that
 *   does not end with SUBIDX_SEP is EINVAL.
 * - removal never fails (it never allocates).
 * - the seed given to subidxNew keys the hash (pick it at random against
 *   collision flooding); the hash stays inside the process.
 * - no globals, no printing, no aborts; every allocation goes through alloc.h.
 * - not thread-safe: one writer, or readers only.
 */
#ifndef HOMESTREAM_SUBIDX_H
#define HOMESTREAM_SUBIDX_H

#include <stddef.h>
#include <stdint.h>

#define SUBIDX_EXACT 0
#define SUBIDX_PREFIX 1
#define SUBIDX_INLINE_IDS 8
#define SUBIDX_NO_ID UINT32_MAX
#define SUBIDX_SEP '/'

typedef struct subidxEntry subidxEntry;

typedef struct subidxSlot {
    uint64_t hash;
    subidxEntry *e;     /* NULL: empty */
} subidxSlot;

typedef struct subidx {
    subidxSlot *slots;
    uint64_t mask;      /* slots - 1 */
    uint64_t keys;      /* occupied slots (distinct keys) */
    uint64_t entries;   /* (key, kind, id) entries */
    uint64_t seed;
} subidx;

/* Output ids plus the dedup set of one match call; reused call after call. */
typedef struct subidxMatchBuf {
    uint32_t *ids;
    size_t cap;
    uint64_t *seen;     /* (generation << 32) | id, open addressing */
    size_t seenMask;
    uint32_t gen;
} subidxMatchBuf;

subidx *subidxNew(uint64_t seed);
void subidxFree(subidx *s);

/* 1 inserted; 0 + errno 0: already there; 0 + errno ENOMEM/EINVAL. */
int subidxInsert(subidx *s, const void *key, size_t len, int kind, uint32_t id);

/* n entries at once: key i is keys[offsets[i] .. offsets[i+1]) (offsets has
 * n + 1 items, non-decreasing), kinds[i], ids[i].  Returns 1 when all were
 * processed; on failure 0 with errno and *done = the index of the entry that
 * failed (entries before it are in).  *added counts the new entries. */
int subidxInsertMany(subidx *s, const void *keys, const uint64_t *offsets, const uint8_t *kinds,
                     const uint32_t *ids, size_t n, size_t *added, size_t *done);

/* 1 removed; 0 (errno 0) absent; 0 + EINVAL for a bad kind. */
int subidxRemove(subidx *s, const void *key, size_t len, int kind, uint32_t id);

uint64_t subidxSize(const subidx *s);
uint64_t subidxKeyCount(const subidx *s);

subidxMatchBuf *subidxMatchBufNew(size_t cap);
/* Make room for at least cap ids; 0 + ENOMEM leaves the buffer as it was. */
int subidxMatchBufReserve(subidxMatchBuf *buf, size_t cap);
void subidxMatchBufFree(subidxMatchBuf *buf);

/* The ids matching key in s, each once, into buf->ids.  1 with *count when
 * they fit; 0 + ERANGE with *count = a size to reserve before calling again. */
int subidxMatch(const subidx *s, const void *key, size_t len, subidxMatchBuf *buf, size_t *count);

/* Two indexes at once (user+path keys and all-user path keys), deduplicated
 * across both; either may be NULL.  Returns the number of distinct ids written
 * to buf->ids when it is <= buf->cap; a larger value means "reserve this many
 * and call again" (nothing is lost). */
size_t subidxMatchPair(const subidx *a, const void *keyA, size_t lenA,
                       const subidx *b, const void *keyB, size_t lenB, subidxMatchBuf *buf);

#endif
