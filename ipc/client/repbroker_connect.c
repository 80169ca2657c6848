/*
 * librepbroker's connections: dialling the broker's socket, REGISTER and ACK_POLICY in one write, WELCOME (or
 * an ERROR: refused), and, after a failure, dialling again with backoff and registering anew. The reader thread
 * does the reconnecting; a new connection replaces the old one under both locks, so no send writes to a
 * connection that is being replaced.
 */
#define _GNU_SOURCE
#include "client_internal.h"
#include "repbroker_sys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Reads frames from `fd` until WELCOME (or an ERROR: refused); bytes after it stay in the input buffer. */
static int await_welcome(repbroker_client *c, int fd, rb_rings **rings, char *reason, size_t reason_size) {
    c->input_used = 0;
    int fds[4] = {-1, -1, -1, -1}, fd_count = 0;
    for (;;) {
        while (c->input_used >= 8) {
            uint32_t length = get32(c->input);
            uint8_t type = c->input[4];
            if (c->input[5] != RB_FRAME_MAGIC || length > RB_MAX_CONTROL_BODY) {
                snprintf(reason, reason_size, "the broker's first frame is malformed");
                return REPBROKER_EPROTOCOL;
            }
            if (c->input_used < 8 + (size_t)length) break;
            const unsigned char *body = c->input + 8;
            int status = REPBROKER_OK;
            uint64_t granted = length == 24 ? get32(body + 12) : 0;
            uint16_t version = length == 24 ? get16(body) : 0;
            if (type == RB_FRAME_ERROR) {
                c->refused_code = length >= 4 ? get32(body) : 0;
                uint32_t text = length >= 4 ? length - 4 : 0;
                snprintf(reason, reason_size, "%.*s", (int)(text > 200 ? 200 : text), (const char *)body + 4);
                status = REPBROKER_EREFUSED;
            } else if (type != RB_FRAME_WELCOME || length != 24 || version < RB_PROTOCOL_VERSION_OLDEST
                       || version > RB_PROTOCOL_VERSION) {
                snprintf(reason, reason_size, "expected WELCOME of version %u ... %u", RB_PROTOCOL_VERSION_OLDEST,
                         RB_PROTOCOL_VERSION);
                status = REPBROKER_EPROTOCOL;
            } else if (granted == 0 && c->transport == REPBROKER_TRANSPORT_SHARED_MEMORY) {
                snprintf(reason, reason_size, "the broker offers no shared-memory rings (--max-ring-bytes 0)");
                status = REPBROKER_EREFUSED;
            } else if (granted > 0 && fd_count != 4) {
                snprintf(reason, reason_size, "WELCOME granted rings but came with %d descriptors, not 4", fd_count);
                status = REPBROKER_EPROTOCOL;
            } else if (granted > 0) {
                status = rb_rings_attach(fds, granted, rings, reason, reason_size);
                if (status == REPBROKER_OK) fd_count = 0;   /* the rings own them now */
            }
            for (int i = 0; i < fd_count; i++) close(fds[i]);
            if (status) return status;
            pthread_mutex_lock(&c->state);
            c->protocol_version = version;
            c->role_state = get16(body + 2);
            c->site_id = (int32_t)get32(body + 4);
            c->client_id = get32(body + 8);
            c->max_message = get64(body + 16);
            pthread_mutex_unlock(&c->state);
            memmove(c->input, c->input + 8 + length, c->input_used - 8 - length);
            c->input_used -= 8 + length;
            return REPBROKER_OK;
        }
        int received = 0, more[4];
        ssize_t got = rb_receive_with_fds(fd, c->input + c->input_used, c->input_capacity - c->input_used, more, 4,
                                          &received);
        for (int i = 0; i < received; i++) {
            if (fd_count < 4) fds[fd_count++] = more[i]; else close(more[i]);
        }
        if (got <= 0) {
            snprintf(reason, reason_size, got == 0 ? "the broker closed the connection before WELCOME"
                                                   : "no WELCOME from the broker: %s", strerror(errno));
            for (int i = 0; i < fd_count; i++) close(fds[i]);
            return REPBROKER_EUNAVAILABLE;
        }
        c->input_used += (size_t)got;
    }
}

/* One connection and registration with request `which` (0: the newest version, 1: the oldest). */
static int dial_once(repbroker_client *c, int which, int *fd_out, rb_rings **rings, char *reason, size_t reason_size,
                     int handshake_seconds) {
    *rings = NULL;
    c->refused_code = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(reason, reason_size, "socket: %s", strerror(errno));
        return REPBROKER_ESYSTEM;
    }
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    memcpy(address.sun_path, c->path, strlen(c->path) + 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        snprintf(reason, reason_size, "cannot connect to %s: %s", c->path, strerror(errno));
        close(fd);
        return REPBROKER_EUNAVAILABLE;
    }
    /* The handshake waits a bounded time; sends wait for the send timeout when the broker takes nothing. */
    struct timeval handshake = {handshake_seconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &handshake, sizeof handshake);
    struct timeval send_timeout = {(time_t)(c->send_timeout_ms / 1000), (long)(c->send_timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
    size_t written = 0;
    while (written < c->request_length[which]) {
        ssize_t n = send(fd, c->request[which] + written, c->request_length[which] - written, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            snprintf(reason, reason_size, "cannot register: %s", strerror(errno));
            close(fd);
            return REPBROKER_EUNAVAILABLE;
        }
        written += (size_t)n;
    }
    int status = await_welcome(c, fd, rings, reason, reason_size);
    if (status) {
        close(fd);
        return status;
    }
    struct timeval forever = {0, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
    *fd_out = fd;
    pthread_mutex_lock(&c->state);
    c->generation++;
    c->connected_at_ns = rb_now_ns();
    pthread_mutex_unlock(&c->state);
    return REPBROKER_OK;
}

/* Registers at the newest version; a broker that refuses it for its version (one of the version before) gets the
   oldest version's REGISTER on a new connection, so both speak the highest version they share. */
int rb_dial(repbroker_client *c, int *fd_out, rb_rings **rings, char *reason, size_t reason_size, int handshake_seconds) {
    int status = dial_once(c, 0, fd_out, rings, reason, reason_size, handshake_seconds);
    if (status == REPBROKER_EREFUSED && c->refused_code == RB_ERR_VERSION)
        status = dial_once(c, 1, fd_out, rings, reason, reason_size, handshake_seconds);
    return status;
}

/* Reconnect delays: 100 ms doubling to 2 s. A connection that lived a second starts again from 100 ms; one
   that ended sooner (a broker that closes every registration, say) does not, so the client backs off. */
enum { BACKOFF_FIRST_MS = 100, BACKOFF_LAST_MS = 2000 };

static unsigned next_backoff(unsigned ms) { return ms * 2 > BACKOFF_LAST_MS ? BACKOFF_LAST_MS : ms * 2; }

int rb_reconnect(repbroker_client *c) {
    pthread_mutex_lock(&c->state);
    if (rb_now_ns() - c->connected_at_ns >= 1000000000u) c->backoff_ms = BACKOFF_FIRST_MS;
    pthread_mutex_unlock(&c->state);
    for (;;) {
        pthread_mutex_lock(&c->state);
        c->role_state = RB_ROLE_STATE_NONE;
        uint64_t until = rb_now_ns() + (uint64_t)c->backoff_ms * 1000000u;
        c->backoff_ms = next_backoff(c->backoff_ms);
        while (!c->closed && rb_wait_until(c, until)) {}
        int closed = c->closed;
        pthread_mutex_unlock(&c->state);
        if (closed) return 0;
        int fd = -1;
        rb_rings *rings = NULL;
        char reason[256] = "";
        if (rb_dial(c, &fd, &rings, reason, sizeof reason, 2) == REPBROKER_OK) {
            pthread_mutex_lock(&c->ring_lock);
            pthread_mutex_lock(&c->write_lock);
            pthread_mutex_lock(&c->state);
            int old = c->fd;
            c->fd = fd;
            /* The receiving thread may still be in the old rings: it lets them go when it sees the new ones. */
            if (c->receiving || (c->held && c->held == c->rings)) {
                if (c->retired != c->held) rb_rings_free(c->retired);
                c->retired = c->rings;
            } else {
                rb_rings_free(c->rings);
            }
            c->rings = rings;
            c->failed = c->closed;
            c->last_error[0] = 0;
            /* Channels this client subscribed to, on the new connection before anything else is sent. */
            for (size_t i = 0; i < c->channel_count; i++) {
                size_t length = strlen(c->channels[i]);
                unsigned char frame[8 + 4 + RB_MAX_GROUP_NAME];
                frame_header(frame, RB_FRAME_SUBSCRIBE, (uint32_t)(4 + length));
                put16(frame + 8, (uint16_t)length);
                put16(frame + 10, 0);
                memcpy(frame + 12, c->channels[i], length);
                struct iovec vector = {frame, 12 + length};
                pthread_mutex_unlock(&c->state);
                int status = rb_write_all(c, &vector, 1);
                pthread_mutex_lock(&c->state);
                if (status) break;
            }
            pthread_cond_broadcast(&c->changed);
            pthread_mutex_unlock(&c->state);
            pthread_mutex_unlock(&c->write_lock);
            pthread_mutex_unlock(&c->ring_lock);
            close(old);
            return 1;
        }
        pthread_mutex_lock(&c->state);
        rb_say(c, "reconnecting: %s", reason);
        pthread_mutex_unlock(&c->state);
    }
}
