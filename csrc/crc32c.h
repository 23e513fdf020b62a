/* crc32c.h -- CRC32C (Castagnoli), the checksum of every log record.
 *
 *   crc = crc32cUpdate(0, buf, len)            one shot
 *   crc = crc32cUpdate(crc32cUpdate(0, a, n), b, m) == crc of a||b
 *
 *        buf: | b0 b1 b2 b3 b4 b5 b6 b7 | b8 ... | tail |
 *              \________ 8 bytes _______/
 *               one step of slicing-by-8: eight table lookups (tables T0..T7,
 *               Tk[i] = CRC of byte i followed by k zero bytes) folded into
 *               the 32-bit state, or one SSE4.2 crc32q instruction when the
 *               CPU has it (checked at run time, never assumed at build time).
 *
 * Polynomial 0x1EDC6F41 (reflected 0x82F63B78), initial value and final xor
 * 0xFFFFFFFF, the same as iSCSI, ext4, Kafka and RocksDB.  Known answer:
 * crc32cUpdate(0, "123456789", 9) == 0xE3069283.
 *
 * The tables are a const array in crc32c.c: no mutable state, no globals,
 * safe from any number of threads.
 */
#ifndef HOMESTREAM_CRC32C_H
#define HOMESTREAM_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC32C: `crc` is the value returned for the bytes before `buf`
 * (0 to start).  `buf` may be NULL when `len` is 0. */
uint32_t crc32cUpdate(uint32_t crc, const void *buf, size_t len);

/* The portable slicing-by-8 path alone (the tests compare both paths). */
uint32_t crc32cUpdateSoft(uint32_t crc, const void *buf, size_t len);

/* 1 when crc32cUpdate uses the SSE4.2 instruction on this CPU, else 0. */
int crc32cHardware(void);

#endif
