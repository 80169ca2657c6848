/*
 * librepbroker's shared helpers, below every other file of the library: error text, the reasons kept for
 * repbroker_last_error, name checks, time and waiting, writing a frame to the socket, and waiting for a result.
 * They call nothing else of the library; repbroker_rings.c, repbroker_connect.c, repbroker_send.c and
 * repbroker_channels.c build on them, and repbroker_client.c (the reader thread, open and close) on all of these.
 */
#define _GNU_SOURCE
#include "client_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ---- */

const char *repbroker_strerror(int error) {
    switch (error) {
    case REPBROKER_OK: return "REPBROKER_OK: success";
    case REPBROKER_EINVAL: return "REPBROKER_EINVAL: invalid argument";
    case REPBROKER_EUNAVAILABLE: return "REPBROKER_EUNAVAILABLE: the broker is unavailable";
    case REPBROKER_ECLOSED: return "REPBROKER_ECLOSED: the client is closed";
    case REPBROKER_ETIMEDOUT: return "REPBROKER_ETIMEDOUT: timed out";
    case REPBROKER_ETOOLARGE: return "REPBROKER_ETOOLARGE: the message exceeds the broker's limit";
    case REPBROKER_EQUEUEFULL: return "REPBROKER_EQUEUEFULL: a destination's queue is full";
    case REPBROKER_EUNROUTABLE: return "REPBROKER_EUNROUTABLE: no such site, or no master known";
    case REPBROKER_ENOTACKED: return "REPBROKER_ENOTACKED: not acknowledged by enough sites in time";
    case REPBROKER_EREFUSED: return "REPBROKER_EREFUSED: the broker refused the client";
    case REPBROKER_EPROTOCOL: return "REPBROKER_EPROTOCOL: the broker sent a frame this library cannot read";
    case REPBROKER_ENOMEM: return "REPBROKER_ENOMEM: out of memory";
    case REPBROKER_ESYSTEM: return "REPBROKER_ESYSTEM: a system call failed";
    case REPBROKER_ENOSUBSCRIBER: return "REPBROKER_ENOSUBSCRIBER: no subscriber for that channel at that site";
    case REPBROKER_ENOMASTER: return "REPBROKER_ENOMASTER: no master is known for the group";
    default: return "unknown repbroker error";
    }
}

/* Keeps the reason of a failure (state lock held). */
void rb_say(repbroker_client *c, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(c->last_error, sizeof c->last_error, format, arguments);
    va_end(arguments);
}

int rb_invalid(repbroker_client *c, const char *format, ...) {
    pthread_mutex_lock(&c->state);
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(c->last_error, sizeof c->last_error, format, arguments);
    va_end(arguments);
    pthread_mutex_unlock(&c->state);
    return REPBROKER_EINVAL;
}

/* Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), as the broker checks it. */
static int utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char lead = s[i];
        if (lead < 0x80) { i++; continue; }
        size_t length = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3 : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
        if (length == 0 || i + length > n) return 0;
        uint32_t point = lead & (0x7F >> length);
        for (size_t k = 1; k < length; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            point = point << 6 | (s[i + k] & 0x3F);
        }
        if ((length == 3 && (point < 0x800 || (point >= 0xD800 && point <= 0xDFFF)))
            || (length == 4 && (point < 0x10000 || point > 0x10FFFF)))
            return 0;
        i += length;
    }
    return 1;
}

int rb_valid_name(const char *text, size_t min, size_t max, size_t *length) {
    if (!text) return 0;
    *length = strnlen(text, max + 1);
    return *length >= min && *length <= max && utf8_valid((const unsigned char *)text, *length);
}

/* The connection is gone: every waiter wakes (state lock held). */
void rb_fail(repbroker_client *c) {
    c->failed = 1;
    pthread_cond_broadcast(&c->changed);
}

/* ---- time ---- */

uint64_t rb_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Waits on `changed` until `deadline_ns` (0: for ever); 0 when the deadline passed. */
int rb_wait_until(repbroker_client *c, uint64_t deadline_ns) {
    if (deadline_ns == 0) {
        pthread_cond_wait(&c->changed, &c->state);
        return 1;
    }
    if (rb_now_ns() >= deadline_ns) return 0;
    struct timespec at = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
    return pthread_cond_timedwait(&c->changed, &c->state, &at) != ETIMEDOUT || rb_now_ns() < deadline_ns;
}

/* ---- writing ---- */

/* Writes every byte of one frame in `vector` (write lock held); 0 or an error. The socket's send timeout
   (SO_SNDTIMEO, the client's send_timeout_ms) bounds each wait: when it passes before any byte of the frame
   went, the connection is intact and the call fails with REPBROKER_ETIMEDOUT; after part of the frame went,
   the stream cannot carry another frame, so the connection is dropped (the broker discards the half frame)
   and the library reconnects. Either way the reason says what happened. */
int rb_write_all(repbroker_client *c, struct iovec *vector, int count) {
    size_t sent = 0;
    while (count > 0) {
        struct msghdr message = {.msg_iov = vector, .msg_iovlen = (size_t)count};
        ssize_t written = sendmsg(c->fd, &message, MSG_NOSIGNAL);
        if (written < 0) {
            if (errno == EINTR) continue;
            int error = errno;
            int timeout = error == EAGAIN || error == EWOULDBLOCK;
            pthread_mutex_lock(&c->state);
            if (timeout && sent == 0) {
                rb_say(c, "the broker took none of the frame within the send timeout (%u ms): its group is congested "
                          "or the broker is stuck; nothing was sent", c->send_timeout_ms);
                pthread_mutex_unlock(&c->state);
                return REPBROKER_ETIMEDOUT;
            }
            if (timeout) {
                rb_say(c, "a send timed out (%u ms) with %zu bytes of its frame written: the connection was dropped "
                          "(the broker discards the half frame, so the message was not sent) and is made again",
                       c->send_timeout_ms, sent);
            } else {
                rb_say(c, "write to the broker failed: %s", strerror(error));
            }
            rb_fail(c);
            pthread_mutex_unlock(&c->state);
            shutdown(c->fd, SHUT_RDWR);
            return timeout ? REPBROKER_ETIMEDOUT : REPBROKER_EUNAVAILABLE;
        }
        sent += (size_t)written;
        size_t left = (size_t)written;
        while (count > 0 && left >= vector->iov_len) {
            left -= vector->iov_len;
            vector++;
            count--;
        }
        if (count > 0) {
            vector->iov_base = (char *)vector->iov_base + left;
            vector->iov_len -= left;
        }
    }
    return REPBROKER_OK;
}

/* Enters a call: the client is open and connected (state lock held); 0 or the error to return. */
int rb_usable(repbroker_client *c) {
    if (c->closed) return REPBROKER_ECLOSED;
    if (c->failed) return REPBROKER_EUNAVAILABLE;
    return REPBROKER_OK;
}

int rb_write_control(repbroker_client *c, uint8_t type, const unsigned char *body, uint32_t length) {
    unsigned char header[8];
    frame_header(header, type, length);
    struct iovec vector[2] = {{header, 8}, {(void *)body, length}};
    pthread_mutex_lock(&c->state);
    int status = rb_usable(c);
    if (!status) c->users++;
    pthread_mutex_unlock(&c->state);
    if (status) return status;
    pthread_mutex_lock(&c->write_lock);
    status = rb_write_all(c, vector, 2);
    pthread_mutex_unlock(&c->write_lock);
    pthread_mutex_lock(&c->state);
    c->users--;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->state);
    return status;
}

/* ---- waiting for a result ---- */

int rb_await(repbroker_client *c, rb_waiter *waiter, uint64_t deadline_ns, int status) {
    while (status == REPBROKER_OK && !waiter->done) {
        if (c->closed) status = REPBROKER_ECLOSED;
        else if (c->failed || c->generation != waiter->generation) status = REPBROKER_EUNAVAILABLE;
        else if (!rb_wait_until(c, deadline_ns)) status = REPBROKER_ETIMEDOUT;
    }
    for (rb_waiter **w = &c->waiters; *w; w = &(*w)->next) {
        if (*w == waiter) { *w = waiter->next; break; }
    }
    pthread_cond_broadcast(&c->changed);  /* the reader may hold back on a full inbox without waiters */
    return status;
}
