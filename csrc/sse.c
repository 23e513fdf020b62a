/* sse.c -- SSE frames from framed log records.  See sse.h for the picture,
 * the record layout and the frame. */
#include <errno.h>
#include <string.h>

#include "sse.h"

#define SSE_MAGIC 0xB1
#define SSE_PUT 1
#define SSE_DEL 2
/* bytes of a frame besides the escaped path and its quotes, at most */
#define SSE_FIXED_MAX 286

static const char sseCrock[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static const char sseB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char sseHex[] = "0123456789abcdef";

static inline uint16_t sseU16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t sseU32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t sseU64(const unsigned char *p) {
    return (uint64_t)sseU32(p) | ((uint64_t)sseU32(p + 4) << 32);
}

/* Append `s` (a literal) to o. */
#define SSE_PUTS(o, s)                     \
    do {                                   \
        memcpy((o), (s), sizeof(s) - 1);   \
        (o) += sizeof(s) - 1;              \
    } while (0)

static inline char *sseDecimal(char *o, uint64_t v) {
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) *o++ = tmp[--n];
    return o;
}

/* 13 chars: the top 4 bits, then twelve 5-bit groups (Crockford, sorts like the number). */
static inline char *sseSeqId(char *o, uint64_t seq) {
    o[0] = sseCrock[seq >> 60];
    for (int i = 0; i < 12; i++) o[1 + i] = sseCrock[(seq >> (55 - 5 * i)) & 31];
    return o + 13;
}

static inline char *sseBase64(char *o, const unsigned char *d) { /* 32 bytes -> 44 chars */
    int i;
    for (i = 0; i + 3 <= 30; i += 3) {
        uint32_t v = ((uint32_t)d[i] << 16) | ((uint32_t)d[i + 1] << 8) | d[i + 2];
        o[0] = sseB64[v >> 18];
        o[1] = sseB64[(v >> 12) & 63];
        o[2] = sseB64[(v >> 6) & 63];
        o[3] = sseB64[v & 63];
        o += 4;
    }
    uint32_t v = ((uint32_t)d[30] << 16) | ((uint32_t)d[31] << 8);
    o[0] = sseB64[v >> 18];
    o[1] = sseB64[(v >> 12) & 63];
    o[2] = sseB64[(v >> 6) & 63];
    o[3] = '=';
    return o + 4;
}

/* Bytes of the escaped path, quotes excluded. */
/* The line separators JSON leaves raw but line splitters do not (U+0085, U+2028, U+2029): bytes of the
 * UTF-8 sequence at p[i] (2 or 3), or 0 when p[i] starts none of them. */
static inline size_t sseSeparatorAt(const unsigned char *p, size_t i, size_t n) {
    if (p[i] == 0xC2 && i + 1 < n && p[i + 1] == 0x85) return 2;
    if (p[i] == 0xE2 && i + 2 < n && p[i + 1] == 0x80 && (p[i + 2] == 0xA8 || p[i + 2] == 0xA9)) return 3;
    return 0;
}

static size_t sseEscapedLen(const unsigned char *p, size_t n) {
    size_t len = n;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c < 0x20) {
            len += (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') ? 1 : 5;
        } else if (c == '"' || c == '\\') {
            len += 1;
        } else if (c == 0xC2 || c == 0xE2) {
            size_t k = sseSeparatorAt(p, i, n);
            if (k) {
                len += 6 - k; /* \uXXXX */
                i += k - 1;
            }
        }
    }
    return len;
}

static inline size_t sseDigits(uint64_t v) {
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Exact bytes of the frame (see sse.h); the quotes of the path included. */
static size_t sseFrameLen(int put, uint64_t seq, uint64_t ts, uint32_t vlen, const unsigned char *path, size_t plen) {
    size_t n = 4 + 13 + 1 + SSE_USER_SIZE + 18 + 7 + sseDigits(seq) + 9 + SSE_USER_SIZE + 9 + 2 +
               sseEscapedLen(path, plen) + 6 + sseDigits(ts) + 3;
    if (put) n += 9 + 44 + 9 + sseDigits(vlen);
    return n;
}

static inline char *sseEscape(char *o, const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] != '"' && p[j] != '\\' && p[j] != 0xC2 && p[j] != 0xE2) j++;
        if (j > i) {
            memcpy(o, p + i, j - i);
            o += j - i;
            i = j;
            if (i == n) break;
        }
        if (p[i] == 0xC2 || p[i] == 0xE2) {
            size_t k = sseSeparatorAt(p, i, n);
            if (!k) { /* any other character: raw */
                *o++ = (char)p[i++];
                continue;
            }
            SSE_PUTS(o, "\\u");
            if (k == 2) SSE_PUTS(o, "0085");
            else if (p[i + 2] == 0xA8) SSE_PUTS(o, "2028");
            else SSE_PUTS(o, "2029");
            i += k;
            continue;
        }
        unsigned char c = p[i++];
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = sseHex[c >> 4];
            *o++ = sseHex[c & 15];
        }
    }
    return o;
}

static int sseMatches(const sseFilter *f, const unsigned char *user, const unsigned char *path, size_t plen) {
    if (f->user && memcmp(f->user, user, SSE_USER_SIZE) != 0) return 0;
    if (f->prefix) {
        if (plen < f->pathlen || memcmp(path, f->path, f->pathlen) != 0) return 0;
    } else {
        if (plen != f->pathlen || memcmp(path, f->path, plen) != 0) return 0;
    }
    if (!f->allowPrivate && (plen < 5 || memcmp(path, "/pub/", 5) != 0)) return 0;
    return 1;
}

int sseReplay(const char *buf, size_t len, uint64_t until, const sseFilter *f,
              char *out, size_t cap, size_t soft, sseResult *r) {
    if (r == NULL) {
        errno = EINVAL;
        return SSE_ERR;
    }
    memset(r, 0, sizeof(*r));
    if ((buf == NULL && len) || f == NULL || (out == NULL && cap) || (f->path == NULL && f->pathlen) ||
        (f->allowPrivate && f->user == NULL)) {
        errno = EINVAL;
        return SSE_ERR;
    }
    const unsigned char *in = (const unsigned char *)buf;
    size_t off = 0, written = 0;
    int rc = SSE_DONE;
    while (off < len) {
        size_t rem = len - off;
        const unsigned char *h = in + off;
        if (rem < 4) { /* zero padding shorter than a length field ends the data, anything else is torn */
            size_t i = 0;
            while (i < rem && h[i] == 0) i++;
            if (i < rem) {
                errno = EILSEQ;
                rc = SSE_ERR;
            }
            break;
        }
        uint32_t length = sseU32(h);
        if (length == 0) break;
        if (length < SSE_HEADER_SIZE || length > rem || h[8] != SSE_MAGIC || (h[9] != SSE_PUT && h[9] != SSE_DEL)) {
            errno = EILSEQ;
            rc = SSE_ERR;
            break;
        }
        size_t plen = sseU16(h + 10), clen = sseU16(h + 12);
        uint32_t vlen = sseU32(h + 32);
        if ((uint64_t)SSE_HEADER_SIZE + plen + clen + vlen != length) {
            errno = EILSEQ;
            rc = SSE_ERR;
            break;
        }
        const unsigned char *user = h + 36;
        int ascii = 1;
        for (int i = 0; i < SSE_USER_SIZE; i++) ascii &= user[i] < 0x80;
        if (!ascii) {
            errno = EILSEQ;
            rc = SSE_ERR;
            break;
        }
        uint64_t seq = sseU64(h + 16);
        if (seq > until) break;
        const unsigned char *path = h + SSE_HEADER_SIZE;
        if (sseMatches(f, user, path, plen)) {
            size_t room = cap - written;
            int put = h[9] == SSE_PUT;
            uint64_t ts = sseU64(h + 24);
            if (room < SSE_FIXED_MAX + 2 + 6 * plen && room < sseFrameLen(put, seq, ts, vlen, path, plen)) {
                rc = SSE_MORE;
                break;
            }
            char *o = out + written;
            SSE_PUTS(o, "id: ");
            o = sseSeqId(o, seq);
            *o++ = '.';
            memcpy(o, user, SSE_USER_SIZE);
            o += SSE_USER_SIZE;
            if (put) SSE_PUTS(o, "\nevent: PUT\ndata: {\"seq\":");
            else SSE_PUTS(o, "\nevent: DEL\ndata: {\"seq\":");
            o = sseDecimal(o, seq);
            SSE_PUTS(o, ",\"user\":\"");
            memcpy(o, user, SSE_USER_SIZE);
            o += SSE_USER_SIZE;
            SSE_PUTS(o, "\",\"path\":\"");
            o = sseEscape(o, path, plen);
            if (put) {
                SSE_PUTS(o, "\",\"hash\":\"");
                o = sseBase64(o, h + 88);
                SSE_PUTS(o, "\",\"size\":");
                o = sseDecimal(o, vlen);
                SSE_PUTS(o, ",\"ts\":");
            } else {
                SSE_PUTS(o, "\",\"ts\":");
            }
            o = sseDecimal(o, ts);
            SSE_PUTS(o, "}\n\n");
            written = (size_t)(o - out);
            r->frames++;
            r->frameSeq = seq;
            r->frameUser = off + 36;
            r->lastSeq = seq;
            off += length;
            if (written >= soft) {
                rc = SSE_MORE;
                break;
            }
            continue;
        }
        r->lastSeq = seq;
        off += length;
    }
    r->written = written;
    r->consumed = off;
    return rc;
}
