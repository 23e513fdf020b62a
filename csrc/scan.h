/* scan.h -- find the log records a history request wants in a raw slice of
 * framed records, without a Python object per record examined.
 *
 *   log slice (mmap)                                     hits (caller's array)
 *   ┌────────┬─────┬────────┬─────┬────────┬─────┬───┐   ┌──────────────┐
 *   │hdr 120 │path │hdr 120 │path │hdr 120 │path │ 0 │   │ off of rec 0 │
 *   └────────┴─────┴────────┴─────┴────────┴─────┴───┘   │ off of rec 2 │
 *    rec 0: hit     rec 1: private, skipped  rec 2: hit  └──────────────┘
 *    ▲ buf                                 len ▲
 *
 * A sparse answer (one public event among 300 000 private ones) costs a walk
 * over record headers here -- a few nanoseconds each, value bytes never
 * touched -- and a Python decode only for the hits (engine/native/scan.py).
 *
 * Record layout: engine/log/record.py (the same as csrc/sse.h draws it):
 * length u32 @0, magic u8 0xB1 @8, kind u8 1|2 @9, path_len u16 @10,
 * ctype_len u16 @12, seq u64 @16, value_len u32 @32, user 52 bytes @36,
 * path @120.
 *
 * The filter (the pubky endpoints of SPEC 3.5):
 *   - users: nusers user ids of 52 bytes, SORTED (memcmp order), or none
 *     (nusers 0): every user;
 *   - per user i, when the arrays are given: only seq > after[i], and, when
 *     before[i] != 0, only seq < before[i] (a reverse cursor);
 *   - the record path starts with prefix (prefixlen 0: every path);
 *   - the record path starts with "/pub/", or the record's user is reader
 *     (reader NULL: public records only).
 *
 * CRCs are NOT checked (records were checked at recovery or written by this
 * process); the framing is, so a bad slice never makes us read past `len`.
 *
 * Contract (rax style):
 * - returns SCAN_DONE (0): walked to the end of buf, to a zero length field,
 *   or to a record with seq > until (not examined);
 *   SCAN_MORE (1): stopped after maxHits hits, or after maxExamined records
 *   examined; resume at buf + r->consumed;
 *   SCAN_ERR (-1) with errno EINVAL (bad arguments) or EILSEQ (a malformed
 *   record at buf + r->consumed: length < 120 or past len, bad magic or kind,
 *   fields that do not add up); the hits before it stand.
 * - r is always set: consumed (a record boundary), lastSeq (seq of the last
 *   record examined, 0: none), examined (records examined), hits (offsets
 *   written to hits[], in order, each the offset in buf of a record).
 * - never reads past buf + len, never writes past hits + maxHits; allocates
 *   nothing; no globals; thread-safe.
 */
#ifndef HOMESTREAM_SCAN_H
#define HOMESTREAM_SCAN_H

#include <stddef.h>
#include <stdint.h>

#define SCAN_DONE 0
#define SCAN_MORE 1
#define SCAN_ERR (-1)
#define SCAN_USER_SIZE 52
#define SCAN_HEADER_SIZE 120

typedef struct scanFilter {
    const char *users;      /* nusers * SCAN_USER_SIZE bytes, sorted; NULL with nusers 0: every user */
    const uint64_t *after;  /* nusers floors (seq > after[i]), or NULL */
    const uint64_t *before; /* nusers ceilings (seq < before[i] unless 0), or NULL */
    size_t nusers;
    const char *prefix;     /* UTF-8 path prefix */
    size_t prefixlen;
    const char *reader;     /* SCAN_USER_SIZE bytes: its private records pass; NULL: public only */
} scanFilter;

typedef struct scanResult {
    size_t consumed;        /* bytes of buf walked, at a record boundary */
    uint64_t lastSeq;       /* seq of the last record examined, 0 if none */
    size_t examined;        /* records examined */
    size_t hits;            /* offsets written */
} scanResult;

int scanRecords(const char *buf, size_t len, uint64_t until, const scanFilter *f, size_t maxExamined,
                uint64_t *hits, size_t maxHits, scanResult *r);

#endif
