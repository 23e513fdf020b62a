/* sse.h -- history replay: SSE frames straight from a slice of framed log
 * records, without a Python object per record.
 *
 *   log segment (mmap)                         caller's output buffer
 *   ┌────────┬──────┬────────┬──────┬───┐      ┌──────────────────────────┐
 *   │hdr 120 │path..│hdr 120 │path..│ 0 │ ──▶  │id: 0000000000001.<user>  │
 *   └────────┴──────┴────────┴──────┴───┘      │event: PUT                │
 *    ▲ buf                     len ▲ │          │data: {"seq":1,...}       │
 *    └── consumed ───────────────┘   │          │<blank line>              │
 *                        length 0 = end of data └──────────────────────────┘
 *
 * Record layout (engine/log/record.py; little-endian, 120-byte header):
 *
 *   off size field           off size field
 *     0  4   length  u32      16  8   seq       u64
 *     4  4   crc     u32      24  8   ts        u64
 *     8  1   magic   u8 0xB1  32  4   value_len u32
 *     9  1   kind    u8 1|2   36 52   user (z-base-32, ASCII)
 *    10  2   path_len u16     88 32   digest (BLAKE3 of the value)
 *    12  2   ctype_len u16   120  .   path, content type, value
 *    14  2   flags   u16
 *
 * sseReplay walks the records in order and, for each one with seq <= until
 * that passes the filter, appends the frame engine.http.sse.event_frame()
 * makes for it (byte for byte, PUT and DEL, no inline bodies):
 *
 *   id: <13-char Crockford seq>.<user>\n
 *   event: PUT\n
 *   data: {"seq":S,"user":"U","path":P,"hash":"<b64 digest>","size":N,"ts":T}\n
 *   \n
 *
 * (DEL: no "hash" and "size").  P is engine.jsontext.dumps(path): '"' and
 * '\' escaped, control bytes as \b \f \n \r \t or \u00xx, the line
 * separators U+0085, U+2028, U+2029 as \u0085 \u2028 \u2029, every other
 * byte (UTF-8, 0x7f) raw.
 *
 * The filter is ONE subscription pattern (the Python matcher of
 * engine/pubsub/subscription.py for a single pattern):
 *   user (52 bytes) == record user, or user NULL for every user; and
 *   path == record path (prefix 0) or record path starts with it (prefix 1);
 *   and the record path starts with "/pub/", unless allowPrivate (the caller
 *   checked that the reader is the pattern's user; then user must be set).
 *
 * CRCs are NOT checked: records were verified at recovery or written by this
 * process; only the framing is checked, so a bad slice never makes us read
 * past `len`.  Paths are not re-validated as UTF-8 (the log holds only valid
 * UTF-8 paths; bytes are copied as they are).
 *
 * Contract (rax style):
 * - returns SSE_DONE (0): the input is walked to its end, to a zero length
 *   field, or to a record with seq > until (not examined);
 *   SSE_MORE (1): stopped for the output: after the frame that brought
 *   *written to >= soft, or before a frame that would not fit in cap (that
 *   record is not examined); resume at buf + *consumed;
 *   SSE_ERR (-1) with errno EINVAL: bad arguments, or EILSEQ: a malformed
 *   record at buf + *consumed (length < 120, past len, fields that do not
 *   add up, bad magic or kind, a non-ASCII user); nothing of it is written.
 * - the out-parameters are always set, also on error, and describe what was
 *   done up to the stop: r->written bytes of out, r->consumed bytes of buf (a
 *   record boundary), r->lastSeq the seq of the last record examined (0:
 *   none), r->frames frames written, r->frameSeq and r->frameUser the seq and
 *   the offset in buf of the 52-byte user id of the last frame (valid when
 *   frames > 0).
 * - never writes past out + cap, never reads past buf + len; allocates
 *   nothing; no globals; thread-safe on distinct outputs.
 * - a frame is at most SSE_FRAME_MAX bytes: with cap >= soft + SSE_FRAME_MAX
 *   the hard stop never happens.
 */
#ifndef HOMESTREAM_SSE_H
#define HOMESTREAM_SSE_H

#include <stddef.h>
#include <stdint.h>

#define SSE_DONE 0
#define SSE_MORE 1
#define SSE_ERR (-1)
#define SSE_USER_SIZE 52
#define SSE_HEADER_SIZE 120
/* 288 bytes around the path (quotes included) + a 65535-byte path all \u00xx, rounded up */
#define SSE_FRAME_MAX 393500

typedef struct sseFilter {
    const char *user;    /* SSE_USER_SIZE bytes, or NULL: every user */
    const char *path;    /* UTF-8 bytes */
    size_t pathlen;
    int prefix;          /* 1: path prefix, 0: exact path */
    int allowPrivate;    /* 1: paths outside /pub/ pass too (needs user) */
} sseFilter;

typedef struct sseResult {
    size_t written;      /* bytes of out */
    size_t consumed;     /* bytes of buf, at a record boundary */
    uint64_t lastSeq;    /* seq of the last record examined, 0 if none */
    size_t frames;       /* frames written */
    uint64_t frameSeq;   /* seq of the last frame written */
    size_t frameUser;    /* offset in buf of the last frame's user id */
} sseResult;

int sseReplay(const char *buf, size_t len, uint64_t until, const sseFilter *f,
              char *out, size_t cap, size_t soft, sseResult *r);

#endif
