"""cffi builder for engine._native, the C core (csrc/*.c).

Used two ways:
- by setuptools (`setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"])`) at install time;
- in place, `python csrc/build_ffi.py`, which compiles under build/ffi/ (or $HOMESTREAM_FFI_TMP) and atomically replaces
  engine/_native*.so so that running processes keep their mapped copy.

Invariants: CDEF below declares exactly what engine/native/*.py use, and every declaration matches the
header of its module (csrc/<module>.h); the engine/native wrappers are the only importers of the result.
Flags: -O2 and nothing CPU-specific (wheels move between machines; SSE4.2 is picked at run time).
"""

from __future__ import annotations

import glob
import os
import shutil
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CDEF = r"""
/* crc32c.h */
uint32_t crc32cUpdate(uint32_t crc, const char *buf, size_t len);
uint32_t crc32cUpdateSoft(uint32_t crc, const char *buf, size_t len);
int crc32cHardware(void);

/* murmur3.h */
uint64_t murmur3X64_128(const char *key, size_t len, uint32_t seed, uint64_t *h2);
void murmur3X64_128Pair(const char *key, size_t len, uint32_t seed, uint64_t out[2]);
uint32_t murmur3X86_32(const char *key, size_t len, uint32_t seed);

/* bloom.h */
typedef struct bloom { uint64_t m; uint32_t k; size_t nbytes; unsigned char *bits; } bloom;
size_t bloomBytesForCount(uint64_t n, double fp);
bloom *bloomNew(size_t nbytes, uint32_t k);
bloom *bloomFromBytes(const char *data, size_t len, uint32_t k);
void bloomFree(bloom *b);
void bloomAdd(bloom *b, const char *key, size_t keylen);
void bloomAddMany(bloom *b, const char *keys, size_t count, size_t keylen);
int bloomCheck(const bloom *b, const char *key, size_t keylen);
size_t bloomCheckMany(const bloom *b, const char *keys, size_t count, size_t keylen, unsigned char *out);
int bloomUnion(bloom *dst, const bloom *src);
void bloomPositions(const bloom *b, const char *key, size_t keylen, uint64_t *out);

/* trie.h */
#define TRIE_EXACT 0
#define TRIE_PREFIX 1
#define TRIE_NO_ID 4294967295
typedef struct trieNode trieNode;
typedef struct trie { trieNode *root; uint64_t entries; uint64_t nodes; } trie;
typedef struct trieMatchBuf { uint32_t *ids; size_t cap; ...; } trieMatchBuf;
trie *trieNew(void);
void trieFree(trie *t);
int trieInsert(trie *t, const char *key, size_t len, int kind, uint32_t id);
int trieInsertMany(trie *t, const char *keys, const uint64_t *offsets, const uint8_t *kinds,
                   const uint32_t *ids, size_t n, size_t *added, size_t *done);
int trieRemove(trie *t, const char *key, size_t len, int kind, uint32_t id);
uint64_t trieSize(const trie *t);
uint64_t trieNodeCount(const trie *t);
trieMatchBuf *trieMatchBufNew(size_t cap);
int trieMatchBufReserve(trieMatchBuf *buf, size_t cap);
void trieMatchBufFree(trieMatchBuf *buf);
int trieMatch(const trie *t, const char *key, size_t len, trieMatchBuf *buf, size_t *count);
size_t trieMatchPair(const trie *a, const char *keyA, size_t lenA,
                     const trie *b, const char *keyB, size_t lenB, trieMatchBuf *buf);

/* subidx.h */
#define SUBIDX_EXACT 0
#define SUBIDX_PREFIX 1
#define SUBIDX_NO_ID 4294967295
typedef struct subidx { ...; } subidx;
typedef struct subidxMatchBuf { uint32_t *ids; size_t cap; ...; } subidxMatchBuf;
subidx *subidxNew(uint64_t seed);
void subidxFree(subidx *s);
int subidxInsert(subidx *s, const char *key, size_t len, int kind, uint32_t id);
int subidxInsertMany(subidx *s, const char *keys, const uint64_t *offsets, const uint8_t *kinds,
                     const uint32_t *ids, size_t n, size_t *added, size_t *done);
int subidxRemove(subidx *s, const char *key, size_t len, int kind, uint32_t id);
uint64_t subidxSize(const subidx *s);
uint64_t subidxKeyCount(const subidx *s);
subidxMatchBuf *subidxMatchBufNew(size_t cap);
int subidxMatchBufReserve(subidxMatchBuf *buf, size_t cap);
void subidxMatchBufFree(subidxMatchBuf *buf);
int subidxMatch(const subidx *s, const char *key, size_t len, subidxMatchBuf *buf, size_t *count);
size_t subidxMatchPair(const subidx *a, const char *keyA, size_t lenA,
                       const subidx *b, const char *keyB, size_t lenB, subidxMatchBuf *buf);

/* riblt.h */
#define RIBLT_SYMBOL_MAX_BYTES 22
typedef struct ribltSymbol { uint64_t key; int64_t count; uint32_t check; ...; } ribltSymbol;
typedef struct riblt { uint64_t salt; size_t n; size_t cap; ribltSymbol *sym; } riblt;
uint32_t ribltCheck(uint64_t salt, uint64_t key);
riblt *ribltNew(uint64_t salt, size_t n);
riblt *ribltCopy(const riblt *s, size_t n);
void ribltFree(riblt *s);
void ribltUpdate(riblt *s, uint64_t key, int64_t sign);
void ribltUpdateMany(riblt *s, const uint64_t *keys, size_t nkeys, int64_t sign);
int ribltExtend(riblt *s, size_t n, const uint64_t *keys, size_t nkeys);
int ribltSubtract(riblt *a, const riblt *b);
int ribltDecode(riblt *s, uint64_t *onlyA, size_t capA, size_t *nA,
                uint64_t *onlyB, size_t capB, size_t *nB);
int ribltSerialize(const riblt *s, size_t start, size_t count, unsigned char *out, size_t cap, size_t *written);
int ribltAppendSymbols(riblt *s, const char *buf, size_t len, size_t *added);
int ribltIsEmpty(const riblt *s);

/* sse.h */
#define SSE_DONE 0
#define SSE_MORE 1
#define SSE_ERR -1
#define SSE_USER_SIZE 52
#define SSE_HEADER_SIZE 120
#define SSE_FRAME_MAX 393500
typedef struct sseFilter { const char *user; const char *path; size_t pathlen; int prefix; int allowPrivate; } sseFilter;
typedef struct sseResult { size_t written; size_t consumed; uint64_t lastSeq; size_t frames; uint64_t frameSeq;
                           size_t frameUser; } sseResult;
int sseReplay(const char *buf, size_t len, uint64_t until, const sseFilter *f,
              char *out, size_t cap, size_t soft, sseResult *r);

/* scan.h */
#define SCAN_DONE 0
#define SCAN_MORE 1
#define SCAN_ERR -1
#define SCAN_USER_SIZE 52
typedef struct scanFilter { const char *users; const uint64_t *after; const uint64_t *before; size_t nusers;
                            const char *prefix; size_t prefixlen; const char *reader; } scanFilter;
typedef struct scanResult { size_t consumed; uint64_t lastSeq; size_t examined; size_t hits; } scanResult;
int scanRecords(const char *buf, size_t len, uint64_t until, const scanFilter *f, size_t maxExamined,
                uint64_t *hits, size_t maxHits, scanResult *r);

/* verify.h */
#define VERIFY_SIGNATURE_BYTES 64
#define VERIFY_KEY_BYTES 32
typedef int (*verifyOpenFn)(unsigned char *m, unsigned long long *mlen, const unsigned char *sm,
                            unsigned long long smlen, const unsigned char *pk);
typedef struct verifyPool verifyPool;
verifyPool *verifyNew(verifyOpenFn open, int threads, size_t capacity);
void verifyFree(verifyPool *p);
int verifyNotifyFd(const verifyPool *p);
int verifySubmit(verifyPool *p, uint64_t ticket, const unsigned char *sig, const unsigned char *msg,
                 size_t msglen, const unsigned char *pk);
void verifyDrainNotify(verifyPool *p);
size_t verifyHarvest(verifyPool *p, uint64_t *tickets, uint8_t *ok, size_t cap);
size_t verifyInFlight(verifyPool *p);
int verifyNow(verifyPool *p, const unsigned char *sig, const unsigned char *msg, size_t msglen,
              const unsigned char *pk);

/* pyfast.inc (compiled into the module only) */
int hsFastInstall(void);
"""

HEADERS = ["crc32c.h", "murmur3.h", "bloom.h", "trie.h", "subidx.h", "riblt.h", "sse.h", "scan.h", "verify.h"]


def make_builder(absolute: bool) -> FFI:
    """The FFI builder; paths relative to the project root for setuptools, absolute for in-place builds
    (cffi compiles from inside its tmpdir)."""
    base = HERE if absolute else "csrc"
    # pyfast.inc is #included by the module source; it is not a standalone .c (tests/c builds the *.c only)
    sources = sorted(os.path.join(base, os.path.basename(p)) for p in glob.glob(os.path.join(HERE, "*.c")))
    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(
        "engine._native",
        "".join(f'#include "{h}"\n' for h in HEADERS) + '#include "pyfast.inc"\n',
        sources=sources,
        include_dirs=[base],
        extra_compile_args=["-O2", "-std=gnu11", "-fvisibility=hidden", "-ffp-contract=off"],
        libraries=["m", "pthread"],  # verify.c runs its checks on pthreads
        # pyfast.inc uses METH_FASTCALL and Py_buffer: the full C API, not the limited one
        py_limited_api=False,
        define_macros=[("_CFFI_NO_LIMITED_API", None)],
    )
    return builder


ffibuilder = make_builder(absolute=False)


def build_in_place() -> str:
    """Compile under build/ffi and move the module into engine/ atomically; return its path."""
    os.chdir(ROOT)
    # HOMESTREAM_FFI_TMP: a separate build folder, so that two in-place builds at once cannot mix objects
    tmpdir = os.environ.get("HOMESTREAM_FFI_TMP") or os.path.join(ROOT, "build", "ffi")
    os.makedirs(tmpdir, exist_ok=True)
    built = make_builder(absolute=True).compile(tmpdir=tmpdir, verbose=bool(os.environ.get("HOMESTREAM_FFI_VERBOSE")))
    target = os.path.join(ROOT, "engine", os.path.basename(built))
    staging = target + ".tmp"
    shutil.copyfile(built, staging)
    os.replace(staging, target)
    return target


if __name__ == "__main__":
    print(build_in_place())
    sys.exit(0)
