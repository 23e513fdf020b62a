/* trie.h -- the subscription index: a compressed (radix) trie over byte
 * strings whose nodes carry subscriber ids, in the manner of Redis rax.
 *
 * Entries are (key bytes, kind, id).  After inserting
 *   ("ab/x", EXACT, 7)  ("ab/", PREFIX, 3)  ("ab/y", EXACT, 3)  ("c", PREFIX, 9)
 * the trie is
 *
 *              (root "")
 *              /        \
 *         ["ab/"]       ["c"]  prefix{9}
 *        prefix{3}
 *         /     \
 *      ["x"]   ["y"]
 *    exact{7}  exact{3}
 *
 * Each node holds the bytes of its edge ("label") inline, its children sorted
 * by the first byte of their label, and two id sets: EXACT ids (the key ends
 * here) and PREFIX ids (every key that starts with the bytes so far).  A
 * node is one heap block:
 *
 *   [hdr 16][label][child bytes][pad to 8][child ptrs][big sets][inline ids]
 *
 * Up to TRIE_INLINE_IDS ids of a kind live inline; beyond that, in an
 * open-addressing hash set (trieIdSet), so a popular pattern with a million
 * subscribers still adds and removes in O(1).
 *
 * Matching key K walks one path from the root: every PREFIX id on the way and
 * the EXACT ids of the node where K ends.  Cost O(len(K) + matches), whatever
 * the number of entries.  Ids are deduplicated per call through a
 * caller-owned trieMatchBuf (an output array and a generation-stamped hash
 * set sized for it): no allocation per call, nothing that grows with the trie.
 *
 * Contract (rax style):
 * - int results: 1 done, 0 not done; a 0 with errno == 0 is a no-op
 *   (inserting an entry that exists, removing one that does not), a 0 with
 *   errno == ENOMEM / EINVAL is a failure that changed nothing.
 * - ids are 0 .. 2^32-2 (UINT32_MAX is reserved: EINVAL).
 * - removal never fails: when tidying the tree would need memory that is not
 *   there, the tree is left untidy but correct.
 * - no globals, no printing, no aborts; every allocation goes through alloc.h.
 * - not thread-safe: one writer, or readers only.  trieFree and the match
 *   walk recurse/loop in depth at most the longest key.
 */
#ifndef HOMESTREAM_TRIE_H
#define HOMESTREAM_TRIE_H

#include <stddef.h>
#include <stdint.h>

#define TRIE_EXACT 0
#define TRIE_PREFIX 1
#define TRIE_INLINE_IDS 8
#define TRIE_NO_ID UINT32_MAX

typedef struct trieNode trieNode;

typedef struct trie {
    trieNode *root;
    uint64_t entries;   /* (key, kind, id) entries */
    uint64_t nodes;     /* nodes, the root included */
} trie;

/* Output ids plus the dedup set of one match call; reused call after call. */
typedef struct trieMatchBuf {
    uint32_t *ids;
    size_t cap;
    uint64_t *seen;     /* (generation << 32) | id, open addressing */
    size_t seenMask;
    uint32_t gen;
} trieMatchBuf;

trie *trieNew(void);
void trieFree(trie *t);

/* 1 inserted; 0 + errno 0: already there; 0 + errno ENOMEM/EINVAL. */
int trieInsert(trie *t, const void *key, size_t len, int kind, uint32_t id);

/* n entries at once: key i is keys[offsets[i] .. offsets[i+1]) (offsets has
 * n + 1 items, non-decreasing), kinds[i], ids[i].  Returns 1 when all were
 * processed; on failure 0 with errno and *done = the index of the entry that
 * failed (entries before it are in).  *added counts the new entries. */
int trieInsertMany(trie *t, const void *keys, const uint64_t *offsets, const uint8_t *kinds,
                   const uint32_t *ids, size_t n, size_t *added, size_t *done);

/* 1 removed; 0 (errno 0) absent; 0 + EINVAL for a bad kind. */
int trieRemove(trie *t, const void *key, size_t len, int kind, uint32_t id);

uint64_t trieSize(const trie *t);
uint64_t trieNodeCount(const trie *t);

trieMatchBuf *trieMatchBufNew(size_t cap);
/* Make room for at least cap ids; 0 + ENOMEM leaves the buffer as it was. */
int trieMatchBufReserve(trieMatchBuf *buf, size_t cap);
void trieMatchBufFree(trieMatchBuf *buf);

/* The ids matching key in t, each once, into buf->ids.  1 with *count when
 * they fit; 0 + ERANGE with *count = a size to reserve before calling again. */
int trieMatch(const trie *t, const void *key, size_t len, trieMatchBuf *buf, size_t *count);

/* The fast path for two tries at once (the user+path trie and the all-user
 * path trie), deduplicated across both; either trie may be NULL.  Returns the
 * number of distinct ids written to buf->ids when it is <= buf->cap; a larger
 * value means "reserve this many and call again" (nothing is lost). */
size_t trieMatchPair(const trie *a, const void *keyA, size_t lenA,
                     const trie *b, const void *keyB, size_t lenB, trieMatchBuf *buf);

#endif
