/* verify.c -- the signature-check pool of verify.h: a FIFO of jobs, n
 * pthread workers, a done list and a self-pipe to wake the event loop. */
#include "verify.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"

#define VERIFY_MAX_THREADS 64
#define VERIFY_MESSAGE_MAX 65536 /* a signed text is a few lines and one path (<= 1 KiB) */

typedef struct verifyJob {
    struct verifyJob *next;
    uint64_t ticket;
    unsigned long long smlen; /* 64 + message length */
    int ok;
    unsigned char pk[VERIFY_KEY_BYTES];
    unsigned char buf[]; /* sm = signature || message (smlen), then room for `open`'s output (smlen) */
} verifyJob;

typedef struct verifyList {
    verifyJob *head, *tail;
} verifyList;

struct verifyPool {
    verifyOpenFn open;
    pthread_mutex_t lock;
    pthread_cond_t work;
    verifyList pending, done;
    size_t inFlight, capacity;
    int signalled; /* a byte is (or is about to be) in the pipe for the current `done` batch */
    int stopping;
    int pipeRead, pipeWrite;
    int threads;
    pthread_t tid[VERIFY_MAX_THREADS];
};

static void listPush(verifyList *l, verifyJob *j) {
    j->next = NULL;
    if (l->tail) l->tail->next = j;
    else l->head = j;
    l->tail = j;
}

static verifyJob *listPop(verifyList *l) {
    verifyJob *j = l->head;
    if (j) {
        l->head = j->next;
        if (!l->head) l->tail = NULL;
    }
    return j;
}

static void listFree(verifyList *l) {
    verifyJob *j;
    while ((j = listPop(l)) != NULL) hsFree(j);
}

static int runOpen(verifyOpenFn open, verifyJob *j) {
    unsigned long long outlen = 0;
    return open(j->buf + j->smlen, &outlen, j->buf, j->smlen, j->pk) == 0;
}

static void *verifyWorker(void *arg) {
    verifyPool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->pending.head && !p->stopping) pthread_cond_wait(&p->work, &p->lock);
        if (p->stopping) break;
        verifyJob *j = listPop(&p->pending);
        pthread_mutex_unlock(&p->lock);
        j->ok = runOpen(p->open, j);
        pthread_mutex_lock(&p->lock);
        listPush(&p->done, j);
        if (!p->signalled) {
            p->signalled = 1;
            char one = 1;
            ssize_t w;
            do w = write(p->pipeWrite, &one, 1);
            while (w < 0 && errno == EINTR);
            /* EAGAIN: the pipe is full of earlier wake-ups, the loop will come anyway */
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static int setNonBlocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return 0;
    flags = fcntl(fd, F_GETFD);
    return flags >= 0 && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) >= 0;
}

verifyPool *verifyNew(verifyOpenFn open, int threads, size_t capacity) {
    if (!open || threads < 1 || threads > VERIFY_MAX_THREADS || capacity == 0) {
        errno = EINVAL;
        return NULL;
    }
    verifyPool *p = hsCalloc(1, sizeof(*p));
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    p->open = open;
    p->capacity = capacity;
    int fds[2];
    if (pipe(fds) < 0) {
        int e = errno;
        hsFree(p);
        errno = e;
        return NULL;
    }
    p->pipeRead = fds[0];
    p->pipeWrite = fds[1];
    if (!setNonBlocking(fds[0]) || !setNonBlocking(fds[1])) goto fail_pipe;
    if (pthread_mutex_init(&p->lock, NULL) != 0) goto fail_pipe;
    if (pthread_cond_init(&p->work, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        goto fail_pipe;
    }
    for (int i = 0; i < threads; i++) {
        int rc = pthread_create(&p->tid[i], NULL, verifyWorker, p);
        if (rc != 0) {
            p->threads = i;
            verifyFree(p);
            errno = rc;
            return NULL;
        }
    }
    p->threads = threads;
    return p;

fail_pipe: {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    hsFree(p);
    errno = e ? e : EINVAL;
    return NULL;
}
}

void verifyFree(verifyPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->threads; i++) pthread_join(p->tid[i], NULL);
    listFree(&p->pending);
    listFree(&p->done);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    close(p->pipeRead);
    close(p->pipeWrite);
    hsFree(p);
}

int verifyNotifyFd(const verifyPool *p) {
    return p->pipeRead;
}

static verifyJob *jobNew(uint64_t ticket, const unsigned char *sig, const unsigned char *msg, size_t msglen,
                         const unsigned char *pk) {
    size_t smlen = VERIFY_SIGNATURE_BYTES + msglen;
    verifyJob *j = hsMalloc(sizeof(*j) + 2 * smlen);
    if (!j) {
        errno = ENOMEM;
        return NULL;
    }
    j->next = NULL;
    j->ticket = ticket;
    j->smlen = smlen;
    j->ok = 0;
    memcpy(j->pk, pk, VERIFY_KEY_BYTES);
    memcpy(j->buf, sig, VERIFY_SIGNATURE_BYTES);
    if (msglen) memcpy(j->buf + VERIFY_SIGNATURE_BYTES, msg, msglen);
    return j;
}

int verifySubmit(verifyPool *p, uint64_t ticket, const unsigned char *sig, const unsigned char *msg,
                 size_t msglen, const unsigned char *pk) {
    if (msglen > VERIFY_MESSAGE_MAX) {
        errno = EINVAL;
        return 0;
    }
    pthread_mutex_lock(&p->lock);
    int stopping = p->stopping, full = p->inFlight >= p->capacity;
    pthread_mutex_unlock(&p->lock);
    if (stopping || full) {
        errno = stopping ? ESHUTDOWN : EAGAIN;
        return 0;
    }
    /* allocate outside the lock; only this (loop) thread submits, so the room checked above is still there */
    verifyJob *j = jobNew(ticket, sig, msg, msglen, pk);
    if (!j) return 0;
    pthread_mutex_lock(&p->lock);
    listPush(&p->pending, j);
    p->inFlight++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    return 1;
}

void verifyDrainNotify(verifyPool *p) {
    char sink[64];
    while (read(p->pipeRead, sink, sizeof(sink)) > 0) {
    }
}

size_t verifyHarvest(verifyPool *p, uint64_t *tickets, uint8_t *ok, size_t cap) {
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    while (n < cap) {
        verifyJob *j = listPop(&p->done);
        if (!j) break;
        tickets[n] = j->ticket;
        ok[n] = (uint8_t)j->ok;
        n++;
        p->inFlight--;
        hsFree(j);
    }
    if (!p->done.head) p->signalled = 0; /* the next answer writes a new byte */
    pthread_mutex_unlock(&p->lock);
    return n;
}

size_t verifyInFlight(verifyPool *p) {
    pthread_mutex_lock(&p->lock);
    size_t n = p->inFlight;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int verifyNow(verifyPool *p, const unsigned char *sig, const unsigned char *msg, size_t msglen,
              const unsigned char *pk) {
    if (msglen > VERIFY_MESSAGE_MAX) {
        errno = EINVAL;
        return -1;
    }
    verifyJob *j = jobNew(0, sig, msg, msglen, pk);
    if (!j) return -1;
    int ok = runOpen(p->open, j);
    hsFree(j);
    return ok;
}
