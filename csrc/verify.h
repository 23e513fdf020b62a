/* verify.h -- ed25519 signature checks on worker threads, off the event loop.
 *
 * The loop hands each signed request's (signature, message, public key) to a
 * pool and goes on parsing other requests; worker threads run the check with
 * no lock held (and no Python GIL: the pool is plain pthreads), and the loop
 * collects the answers when the notify pipe turns readable.
 *
 *   loop thread                                 worker threads (1..n)
 *   -----------                                 ---------------------
 *   verifySubmit(ticket, sig, msg, pk)
 *        | copies sig||msg into one job
 *        v
 *   pending: [job]->[job]->[job]  --- mutex + condvar --->  pop one, unlock
 *                                                              |
 *                                            open(out, &outlen, sig||msg, pk)
 *                                            (libsodium's crypto_sign_open,
 *                                             reached through a pointer)
 *                                                              | lock, push
 *   done:    [job]->[job]  <-------------------------------------+
 *        |                        one byte on the pipe when `done` goes
 *        v                        from empty to non-empty
 *   verifyDrainNotify(); verifyHarvest(tickets, ok, cap)  (repeat while full)
 *
 * Invariants:
 * - the check itself is whatever `open` says: the pool adds no crypto of its
 *   own; `open` must be thread-safe (libsodium's is, after sodium_init);
 * - every submitted job comes back from verifyHarvest exactly once, unless
 *   the pool is freed first (then it is dropped, unanswered);
 * - answers come back in completion order: with one worker that is
 *   submission order; with several, callers must not rely on order;
 * - the loop must drain the pipe BEFORE harvesting and harvest until a call
 *   returns fewer than `cap` answers, or a wake-up can be lost;
 * - at most `capacity` jobs are in the pool (pending + done); verifySubmit
 *   says 0 with errno = EAGAIN beyond that, so memory stays bounded;
 * - out of memory: verifySubmit returns 0 with errno = ENOMEM and the pool is
 *   unchanged; no globals; every allocation goes through alloc.h.
 */
#ifndef HOMESTREAM_VERIFY_H
#define HOMESTREAM_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#define VERIFY_SIGNATURE_BYTES 64
#define VERIFY_KEY_BYTES 32

/* The check: libsodium's crypto_sign_open signature. 0 = valid. `m` has room
 * for smlen bytes. */
typedef int (*verifyOpenFn)(unsigned char *m, unsigned long long *mlen, const unsigned char *sm,
                            unsigned long long smlen, const unsigned char *pk);

typedef struct verifyPool verifyPool;

/* A pool of `threads` workers (1..64) holding at most `capacity` jobs.
 * NULL with errno set on failure (ENOMEM, EINVAL, or pthread/pipe errors). */
verifyPool *verifyNew(verifyOpenFn open, int threads, size_t capacity);

/* Stop the workers (a check in progress finishes first), drop unanswered
 * jobs, close the pipe, free everything. NULL is a no-op. */
void verifyFree(verifyPool *p);

/* The read end of the notify pipe (non-blocking): readable when answers wait. */
int verifyNotifyFd(const verifyPool *p);

/* Queue one check. 1 on success; 0 with errno EAGAIN (pool full), ENOMEM,
 * EINVAL (msglen too large) or ESHUTDOWN (pool stopping). */
int verifySubmit(verifyPool *p, uint64_t ticket, const unsigned char *sig, const unsigned char *msg,
                 size_t msglen, const unsigned char *pk);

/* Empty the notify pipe. Call before verifyHarvest. */
void verifyDrainNotify(verifyPool *p);

/* Move up to `cap` answers out: tickets[i] with ok[i] = 1 valid, 0 invalid.
 * Returns how many. */
size_t verifyHarvest(verifyPool *p, uint64_t *tickets, uint8_t *ok, size_t cap);

/* Jobs in the pool (pending + done), for metrics and tests. */
size_t verifyInFlight(verifyPool *p);

/* Run one check now on the calling thread, with the pool's `open`; 1 valid,
 * 0 invalid, -1 with errno = ENOMEM. The same code path the workers take. */
int verifyNow(verifyPool *p, const unsigned char *sig, const unsigned char *msg, size_t msglen,
              const unsigned char *pk);

#endif
