/* scan.c -- the records a history request wants, from a raw log slice.
 * See scan.h for the picture, the filter and the contract. */
#include <errno.h>
#include <string.h>

#include "scan.h"

#define SCAN_MAGIC 0xB1
#define SCAN_PUT 1
#define SCAN_DEL 2

static inline uint16_t scanU16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t scanU32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t scanU64(const unsigned char *p) {
    return (uint64_t)scanU32(p) | ((uint64_t)scanU32(p + 4) << 32);
}

/* Index of user in the sorted users, or -1. */
static long scanFindUser(const scanFilter *f, const unsigned char *user) {
    size_t lo = 0, hi = f->nusers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(f->users + mid * SCAN_USER_SIZE, user, SCAN_USER_SIZE);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static int scanWanted(const scanFilter *f, uint64_t seq, const unsigned char *user, const unsigned char *path,
                      size_t plen) {
    if (plen < f->prefixlen || (f->prefixlen && memcmp(path, f->prefix, f->prefixlen) != 0)) return 0;
    if (!(plen >= 5 && memcmp(path, "/pub/", 5) == 0) &&
        !(f->reader && memcmp(f->reader, user, SCAN_USER_SIZE) == 0))
        return 0;
    if (f->nusers) {
        long i = scanFindUser(f, user);
        if (i < 0) return 0;
        if (f->after && seq <= f->after[i]) return 0;
        if (f->before && f->before[i] && seq >= f->before[i]) return 0;
    }
    return 1;
}

int scanRecords(const char *buf, size_t len, uint64_t until, const scanFilter *f, size_t maxExamined,
                uint64_t *hits, size_t maxHits, scanResult *r) {
    if (r == NULL) {
        errno = EINVAL;
        return SCAN_ERR;
    }
    memset(r, 0, sizeof(*r));
    if ((buf == NULL && len) || f == NULL || (hits == NULL && maxHits) || (f->users == NULL && f->nusers) ||
        (f->prefix == NULL && f->prefixlen)) {
        errno = EINVAL;
        return SCAN_ERR;
    }
    const unsigned char *in = (const unsigned char *)buf;
    size_t off = 0;
    int rc = SCAN_DONE;
    while (off < len) {
        if (r->hits >= maxHits || r->examined >= maxExamined) {
            rc = SCAN_MORE;
            break;
        }
        size_t rem = len - off;
        const unsigned char *h = in + off;
        if (rem < 4) { /* zero padding shorter than a length field ends the data, anything else is torn */
            size_t i = 0;
            while (i < rem && h[i] == 0) i++;
            if (i < rem) {
                errno = EILSEQ;
                rc = SCAN_ERR;
            }
            break;
        }
        uint32_t length = scanU32(h);
        if (length == 0) break;
        if (length < SCAN_HEADER_SIZE || length > rem || h[8] != SCAN_MAGIC ||
            (h[9] != SCAN_PUT && h[9] != SCAN_DEL)) {
            errno = EILSEQ;
            rc = SCAN_ERR;
            break;
        }
        size_t plen = scanU16(h + 10), clen = scanU16(h + 12);
        uint32_t vlen = scanU32(h + 32);
        if ((uint64_t)SCAN_HEADER_SIZE + plen + clen + vlen != length) {
            errno = EILSEQ;
            rc = SCAN_ERR;
            break;
        }
        uint64_t seq = scanU64(h + 16);
        if (seq > until) break;
        r->examined++;
        r->lastSeq = seq;
        if (scanWanted(f, seq, h + 36, h + SCAN_HEADER_SIZE, plen)) hits[r->hits++] = off;
        off += length;
    }
    r->consumed = off;
    return rc;
}
