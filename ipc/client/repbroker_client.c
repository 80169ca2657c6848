/*
 * librepbroker: ipc/include/repbroker_client.h over the broker's Unix socket, from ipc/PROTOCOL.md alone.
 * One connection per client; a reader thread reads every frame the broker sends: SEND_RESULT wakes the sender
 * waiting for it, ROLE updates the role, MESSAGE and SITE_EVENT go to a bounded inbox that
 * repbroker_next_event takes from, ERROR and anything malformed end the connection with the reason kept.
 * Every length read from the socket is checked against the frame limits before it is used.
 */
#define _GNU_SOURCE
#include "repbroker_client.h"
#include "repbroker_frames.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A received message or site event, in the inbox. */
typedef struct rb_item {
    struct rb_item *next;
    repbroker_event event;
    size_t bytes;            /* control + rec, for the inbox limit */
    unsigned char data[];    /* control bytes, then rec bytes */
} rb_item;

/* A PERMANENT send waiting for its SEND_RESULT. */
typedef struct rb_waiter {
    struct rb_waiter *next;
    uint64_t sequence;
    int done;
    uint32_t status;
} rb_waiter;

struct repbroker_client {
    int fd;
    pthread_t reader;
    int reader_started;
    pthread_mutex_t write_lock;   /* one writer at a time on the socket */
    pthread_mutex_t state;        /* everything below */
    pthread_cond_t changed;
    int closed;
    int failed;                   /* the connection is gone: calls return REPBROKER_EUNAVAILABLE */
    int users;                    /* calls inside the client (close waits for them) */
    char last_error[256];
    int32_t site_id;
    uint32_t client_id;
    uint64_t max_message;
    int role_state;
    uint64_t next_sequence;
    rb_waiter *waiters;
    rb_item *head, *tail;
    size_t inbox_bytes, inbox_limit;
    int receiving;                /* a thread is in repbroker_next_event */
    rb_item *current;             /* the last event handed out (freed on the next call) */
    unsigned send_timeout_ms, ack_timeout_ms;
    repbroker_ack_policy ack_policy;
    repbroker_stats stats;
    /* The reader's buffer: bytes read and not yet parsed. */
    unsigned char *input;
    size_t input_used, input_capacity;
};

/* ---- little-endian fields ---- */

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

static void frame_header(unsigned char *p, uint8_t type, uint32_t length) {
    put32(p, length);
    p[4] = type;
    p[5] = RB_FRAME_MAGIC;
    put16(p + 6, 0);
}

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
    default: return "unknown repbroker error";
    }
}

/* Keeps the reason of a failure (state lock held). */
static void say(repbroker_client *c, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(c->last_error, sizeof c->last_error, format, arguments);
    va_end(arguments);
}

/* The connection is gone: every waiter wakes (state lock held). */
static void fail(repbroker_client *c) {
    c->failed = 1;
    pthread_cond_broadcast(&c->changed);
}

const char *repbroker_last_error(repbroker_client *c) { return c ? c->last_error : ""; }

/* ---- time ---- */

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Waits on `changed` until `deadline_ns` (0: for ever); 0 when the deadline passed. */
static int wait_until(repbroker_client *c, uint64_t deadline_ns) {
    if (deadline_ns == 0) {
        pthread_cond_wait(&c->changed, &c->state);
        return 1;
    }
    if (now_ns() >= deadline_ns) return 0;
    struct timespec at = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
    return pthread_cond_timedwait(&c->changed, &c->state, &at) != ETIMEDOUT || now_ns() < deadline_ns;
}

/* ---- writing ---- */

/* Writes every byte of `vector` (write lock held); 0 or an error (the connection is then unusable). */
static int write_all(repbroker_client *c, struct iovec *vector, int count) {
    while (count > 0) {
        struct msghdr message = {.msg_iov = vector, .msg_iovlen = (size_t)count};
        ssize_t written = sendmsg(c->fd, &message, MSG_NOSIGNAL);
        if (written < 0) {
            if (errno == EINTR) continue;
            int code = errno == EAGAIN || errno == EWOULDBLOCK ? REPBROKER_ETIMEDOUT : REPBROKER_EUNAVAILABLE;
            pthread_mutex_lock(&c->state);
            say(c, code == REPBROKER_ETIMEDOUT ? "the broker took nothing for the send timeout"
                                               : "write to the broker failed: %s", strerror(errno));
            /* Part of a frame may be out: the stream cannot carry another one. */
            fail(c);
            pthread_mutex_unlock(&c->state);
            shutdown(c->fd, SHUT_RDWR);
            return code;
        }
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
static int usable(repbroker_client *c) {
    if (c->closed) return REPBROKER_ECLOSED;
    if (c->failed) return REPBROKER_EUNAVAILABLE;
    return REPBROKER_OK;
}

static int write_control(repbroker_client *c, uint8_t type, const unsigned char *body, uint32_t length) {
    unsigned char header[8];
    frame_header(header, type, length);
    struct iovec vector[2] = {{header, 8}, {(void *)body, length}};
    pthread_mutex_lock(&c->state);
    int status = usable(c);
    if (!status) c->users++;
    pthread_mutex_unlock(&c->state);
    if (status) return status;
    pthread_mutex_lock(&c->write_lock);
    status = write_all(c, vector, 2);
    pthread_mutex_unlock(&c->write_lock);
    pthread_mutex_lock(&c->state);
    c->users--;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->state);
    return status;
}

/* ---- the reader thread ---- */

/* Appends an inbox item (state lock held); the reader waits while the inbox is over its limit and no send
   waits for a result (a SEND_RESULT behind the messages must still be read). */
static void push(repbroker_client *c, rb_item *item) {
    while (c->inbox_bytes > c->inbox_limit && c->waiters == NULL && !c->closed) pthread_cond_wait(&c->changed, &c->state);
    item->next = NULL;
    if (c->tail) c->tail->next = item; else c->head = item;
    c->tail = item;
    c->inbox_bytes += item->bytes;
    pthread_cond_broadcast(&c->changed);
}

/* Handles one whole frame; 0, or the error that ends the connection (its reason said). */
static int handle(repbroker_client *c, uint8_t type, const unsigned char *body, uint32_t length) {
    switch (type) {
    case RB_FRAME_MESSAGE: {
        if (length < 40) { say(c, "MESSAGE of %u bytes is shorter than its header", length); return REPBROKER_EPROTOCOL; }
        uint64_t control = get32(body + 24), rec = get32(body + 28);
        if (control + rec != (uint64_t)length - 40) {
            say(c, "MESSAGE lengths %llu + %llu do not fill its %u-byte body", (unsigned long long)control,
                (unsigned long long)rec, length);
            return REPBROKER_EPROTOCOL;
        }
        rb_item *item = malloc(sizeof *item + control + rec);
        if (!item) { say(c, "no memory for a message of %llu bytes", (unsigned long long)(control + rec)); return REPBROKER_ENOMEM; }
        memcpy(item->data, body + 40, control + rec);
        item->bytes = control + rec;
        item->event = (repbroker_event){
            .kind = REPBROKER_EVENT_MESSAGE, .site = (int32_t)get32(body + 4),
            .control = item->data, .control_length = control, .rec = item->data + control, .rec_length = rec,
            .lsn = {get32(body + 16), get32(body + 20)}, .flags = get32(body + 12)};
        c->stats.messages_received++;
        c->stats.bytes_received += control + rec;
        push(c, item);
        return 0;
    }
    case RB_FRAME_SITE_EVENT: {
        if (length != 8 || get16(body + 4) > 1) { say(c, "malformed SITE_EVENT"); return REPBROKER_EPROTOCOL; }
        rb_item *item = malloc(sizeof *item);
        if (!item) return REPBROKER_ENOMEM;
        item->bytes = 0;
        item->event = (repbroker_event){.kind = get16(body + 4) ? REPBROKER_EVENT_SITE_UP : REPBROKER_EVENT_SITE_DOWN,
                                        .site = (int32_t)get32(body)};
        push(c, item);
        return 0;
    }
    case RB_FRAME_SEND_RESULT: {
        if (length != 16) { say(c, "malformed SEND_RESULT"); return REPBROKER_EPROTOCOL; }
        uint64_t sequence = get64(body);
        for (rb_waiter *w = c->waiters; w; w = w->next) {
            if (w->sequence == sequence) {
                w->done = 1;
                w->status = get32(body + 8);
                pthread_cond_broadcast(&c->changed);
            }
        }
        return 0;
    }
    case RB_FRAME_ROLE:
        if (length != 4) { say(c, "malformed ROLE"); return REPBROKER_EPROTOCOL; }
        c->role_state = get16(body);
        pthread_cond_broadcast(&c->changed);
        return 0;
    case RB_FRAME_ERROR: {
        uint32_t reason = length >= 4 ? length - 4 : 0;
        say(c, "the broker closed the connection: error %u: %.*s", length >= 4 ? get32(body) : 0, (int)(reason > 200 ? 200 : reason),
            (const char *)body + 4);
        return REPBROKER_EUNAVAILABLE;
    }
    default:
        say(c, "unexpected frame type 0x%02x from the broker", type);
        return REPBROKER_EPROTOCOL;
    }
}

/* The limit on a frame's body, by type, checked before the body is waited for. */
static uint64_t body_limit(const repbroker_client *c, uint8_t type) {
    return type == RB_FRAME_MESSAGE ? 40 + c->max_message : RB_MAX_CONTROL_BODY;
}

/* Parses every whole frame in the input buffer (state lock held); 0, or the error that ends the connection. */
static int parse_input(repbroker_client *c) {
    size_t at = 0;
    while (c->input_used - at >= 8) {
        const unsigned char *header = c->input + at;
        uint32_t length = get32(header);
        if (header[5] != RB_FRAME_MAGIC || get16(header + 6) != 0) { say(c, "bad frame header from the broker"); return REPBROKER_EPROTOCOL; }
        if (length > body_limit(c, header[4])) { say(c, "frame of %u bytes over its limit", length); return REPBROKER_EPROTOCOL; }
        if (c->input_used - at - 8 < length) {
            /* Room for the whole frame, then wait for the rest. */
            if (8 + (size_t)length > c->input_capacity) {
                unsigned char *grown = realloc(c->input, 8 + (size_t)length);
                if (!grown) { say(c, "no memory for a frame of %u bytes", length); return REPBROKER_ENOMEM; }
                c->input = grown;
                c->input_capacity = 8 + (size_t)length;
                header = c->input + at;
            }
            break;
        }
        int status = handle(c, header[4], header + 8, length);
        if (status) return status;
        at += 8 + (size_t)length;
    }
    memmove(c->input, c->input + at, c->input_used - at);
    c->input_used -= at;
    return 0;
}

static void *read_loop(void *argument) {
    repbroker_client *c = argument;
    for (;;) {
        if (c->input_used == c->input_capacity) {
            pthread_mutex_lock(&c->state);
            say(c, "input buffer full");
            fail(c);
            pthread_mutex_unlock(&c->state);
            break;
        }
        ssize_t got = read(c->fd, c->input + c->input_used, c->input_capacity - c->input_used);
        if (got < 0 && errno == EINTR) continue;
        pthread_mutex_lock(&c->state);
        if (got <= 0) {
            if (!c->closed) say(c, got == 0 ? "the broker closed the connection" : "read from the broker failed: %s", strerror(errno));
            fail(c);
            pthread_mutex_unlock(&c->state);
            break;
        }
        c->input_used += (size_t)got;
        int status = parse_input(c);
        if (status) {
            fail(c);
            pthread_mutex_unlock(&c->state);
            shutdown(c->fd, SHUT_RDWR);
            break;
        }
        pthread_mutex_unlock(&c->state);
    }
    return NULL;
}

/* ---- open and close ---- */

void repbroker_options_init(repbroker_options *o) {
    memset(o, 0, sizeof *o);
    o->roles = REPBROKER_ROLE_SENDER;
    o->ack_policy = REPBROKER_ACK_NONE;
    o->ack_timeout_ms = 1000;
    o->send_timeout_ms = 5000;
    o->inbox_limit_bytes = (size_t)64 << 20;
}

static void destroy(repbroker_client *c) {
    if (c->fd >= 0) close(c->fd);
    for (rb_item *i = c->head, *next; i; i = next) { next = i->next; free(i); }
    free(c->current);
    free(c->input);
    pthread_mutex_destroy(&c->write_lock);
    pthread_mutex_destroy(&c->state);
    pthread_cond_destroy(&c->changed);
    free(c);
}

/* Reads frames until WELCOME (or an ERROR: refused); leftover bytes stay in the input buffer. */
static int await_welcome(repbroker_client *c, char *reason, size_t reason_size) {
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
            if (type == RB_FRAME_ERROR) {
                uint32_t text = length >= 4 ? length - 4 : 0;
                snprintf(reason, reason_size, "%.*s", (int)(text > 200 ? 200 : text), (const char *)body + 4);
                return REPBROKER_EREFUSED;
            }
            if (type != RB_FRAME_WELCOME || length != 24 || get16(body) != RB_PROTOCOL_VERSION || get32(body + 12) != 0) {
                snprintf(reason, reason_size, "expected WELCOME of version %u for the socket transport", RB_PROTOCOL_VERSION);
                return REPBROKER_EPROTOCOL;
            }
            c->role_state = get16(body + 2);
            c->site_id = (int32_t)get32(body + 4);
            c->client_id = get32(body + 8);
            c->max_message = get64(body + 16);
            memmove(c->input, c->input + 8 + length, c->input_used - 8 - length);
            c->input_used -= 8 + length;
            return REPBROKER_OK;
        }
        ssize_t got = read(c->fd, c->input + c->input_used, c->input_capacity - c->input_used);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            snprintf(reason, reason_size, got == 0 ? "the broker closed the connection before WELCOME"
                                                   : "no WELCOME from the broker: %s", strerror(errno));
            return REPBROKER_EUNAVAILABLE;
        }
        c->input_used += (size_t)got;
    }
}

int repbroker_open(const repbroker_options *options, repbroker_client **out) {
    if (!out) return REPBROKER_EINVAL;
    *out = NULL;
    repbroker_options o;
    if (options) o = *options; else repbroker_options_init(&o);
    const char *group = o.group ? o.group : "default";
    const char *name = o.name ? o.name : "";
    size_t group_length = strlen(group), name_length = strlen(name);
    if (group_length < 1 || group_length > RB_MAX_GROUP_NAME || name_length > RB_MAX_CLIENT_NAME
        || (o.roles & ~(unsigned)(REPBROKER_ROLE_SENDER | REPBROKER_ROLE_RECEIVER)) || o.roles == 0
        || o.ack_policy < REPBROKER_ACK_NONE || o.ack_policy > REPBROKER_ACK_ALL
        || o.ack_timeout_ms < 1 || o.ack_timeout_ms > 600000 || o.send_timeout_ms < 1)
        return REPBROKER_EINVAL;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (o.socket_path) {
        if (strlen(o.socket_path) >= sizeof path) return REPBROKER_EINVAL;
        snprintf(path, sizeof path, "%s", o.socket_path);
    } else {
        const char *runtime = getenv("XDG_RUNTIME_DIR");
        if (runtime && *runtime) snprintf(path, sizeof path, "%s/repbroker/broker.sock", runtime);
        else snprintf(path, sizeof path, "/tmp/repbroker-%u/broker.sock", (unsigned)getuid());
    }
    repbroker_client *c = calloc(1, sizeof *c);
    if (!c) return REPBROKER_ENOMEM;
    c->fd = -1;
    pthread_mutex_init(&c->write_lock, NULL);
    pthread_mutex_init(&c->state, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&c->changed, &attributes);
    pthread_condattr_destroy(&attributes);
    c->inbox_limit = o.inbox_limit_bytes ? o.inbox_limit_bytes : (size_t)64 << 20;
    c->send_timeout_ms = o.send_timeout_ms;
    c->ack_timeout_ms = o.ack_timeout_ms;
    c->ack_policy = o.ack_policy;
    c->input_capacity = 256 << 10;
    c->input = malloc(c->input_capacity);
    if (!c->input) { destroy(c); return REPBROKER_ENOMEM; }

    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) { destroy(c); return REPBROKER_ESYSTEM; }
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    memcpy(address.sun_path, path, strlen(path) + 1);
    if (connect(c->fd, (struct sockaddr *)&address, sizeof address) != 0) { destroy(c); return REPBROKER_EUNAVAILABLE; }
    /* The handshake waits at most 10 s; sends wait for the send timeout when the broker takes nothing. */
    struct timeval handshake = {10, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &handshake, sizeof handshake);
    struct timeval send_timeout = {(time_t)(o.send_timeout_ms / 1000), (long)(o.send_timeout_ms % 1000) * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);

    /* REGISTER, then ACK_POLICY, in one write. */
    unsigned char request[8 + 16 + RB_MAX_GROUP_NAME + RB_MAX_CLIENT_NAME + 8 + 8];
    size_t register_length = 16 + group_length + name_length;
    frame_header(request, RB_FRAME_REGISTER, (uint32_t)register_length);
    unsigned char *body = request + 8;
    put16(body, RB_PROTOCOL_VERSION);
    put16(body + 2, (uint16_t)o.roles);
    put32(body + 4, (uint32_t)getpid());
    put16(body + 8, (uint16_t)group_length);
    put16(body + 10, (uint16_t)name_length);
    put32(body + 12, 0);
    memcpy(body + 16, group, group_length);
    memcpy(body + 16 + group_length, name, name_length);
    unsigned char *policy = body + register_length;
    frame_header(policy, RB_FRAME_ACK_POLICY, 8);
    put16(policy + 8, (uint16_t)o.ack_policy);
    put16(policy + 10, 0);
    put32(policy + 12, o.ack_timeout_ms);
    struct iovec vector = {request, 8 + register_length + 16};
    int status = write_all(c, &vector, 1);
    char reason[256] = "";
    if (status == REPBROKER_OK) status = await_welcome(c, reason, sizeof reason);
    if (status) {
        destroy(c);
        return status;
    }
    struct timeval forever = {0, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
    pthread_mutex_lock(&c->state);
    status = parse_input(c);   /* frames that came with WELCOME */
    pthread_mutex_unlock(&c->state);
    if (status || pthread_create(&c->reader, NULL, read_loop, c) != 0) {
        destroy(c);
        return status ? status : REPBROKER_ESYSTEM;
    }
    c->reader_started = 1;
    *out = c;
    return REPBROKER_OK;
}

void repbroker_close(repbroker_client *c) {
    if (!c) return;
    pthread_mutex_lock(&c->state);
    c->closed = 1;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->state);
    shutdown(c->fd, SHUT_RDWR);
    if (c->reader_started) pthread_join(c->reader, NULL);
    pthread_mutex_lock(&c->state);
    while (c->users > 0) pthread_cond_wait(&c->changed, &c->state);
    pthread_mutex_unlock(&c->state);
    destroy(c);
}

/* ---- calls ---- */

int repbroker_send(repbroker_client *c, int32_t eid, const void *control, size_t control_length, const void *rec,
                   size_t rec_length, const repbroker_lsn *lsn, uint32_t flags) {
    if (!c || (flags & ~0xFu) || !(eid > 0 || eid == REPBROKER_EID_BROADCAST || eid == REPBROKER_EID_MASTER)
        || (control_length && !control) || (rec_length && !rec))
        return REPBROKER_EINVAL;
    if ((uint64_t)control_length + rec_length > c->max_message) return REPBROKER_ETOOLARGE;
    int permanent = (flags & REPBROKER_REP_PERMANENT) != 0;
    rb_waiter waiter = {0};
    pthread_mutex_lock(&c->state);
    int status = usable(c);
    if (status) { pthread_mutex_unlock(&c->state); return status; }
    c->users++;
    if (permanent) {
        waiter.sequence = ++c->next_sequence;
        waiter.next = c->waiters;
        c->waiters = &waiter;
    }
    pthread_mutex_unlock(&c->state);

    unsigned char header[48];
    frame_header(header, RB_FRAME_MESSAGE, (uint32_t)(40 + control_length + rec_length));
    unsigned char *m = header + 8;
    put32(m, 0);
    put32(m + 4, 0);
    put32(m + 8, (uint32_t)eid);
    put32(m + 12, flags);
    put32(m + 16, lsn ? lsn->file : 0);
    put32(m + 20, lsn ? lsn->offset : 0);
    put32(m + 24, (uint32_t)control_length);
    put32(m + 28, (uint32_t)rec_length);
    put64(m + 32, waiter.sequence);
    struct iovec vector[3] = {{header, 48}, {(void *)control, control_length}, {(void *)rec, rec_length}};
    pthread_mutex_lock(&c->write_lock);
    status = write_all(c, vector, 3);
    pthread_mutex_unlock(&c->write_lock);

    pthread_mutex_lock(&c->state);
    if (status == REPBROKER_OK) {
        c->stats.messages_sent++;
        c->stats.bytes_sent += control_length + rec_length;
    }
    if (permanent) {
        /* Long enough for the ack policy's timeout and the broker's answer after it. */
        uint64_t wait_ms = c->send_timeout_ms;
        if (c->ack_policy != REPBROKER_ACK_NONE && c->ack_timeout_ms + 2000u > wait_ms) wait_ms = c->ack_timeout_ms + 2000u;
        uint64_t deadline = now_ns() + wait_ms * 1000000u;
        while (status == REPBROKER_OK && !waiter.done) {
            if (c->closed) status = REPBROKER_ECLOSED;
            else if (c->failed) status = REPBROKER_EUNAVAILABLE;
            else if (!wait_until(c, deadline)) status = REPBROKER_ETIMEDOUT;
        }
        if (status == REPBROKER_OK) {
            switch (waiter.status) {
            case RB_SEND_OK: c->stats.permanent_acked++; break;
            case RB_SEND_QUEUE_FULL: status = REPBROKER_EQUEUEFULL; break;
            case RB_SEND_UNROUTABLE: status = REPBROKER_EUNROUTABLE; break;
            case RB_SEND_ACK_TIMEOUT: status = REPBROKER_ENOTACKED; break;
            default: status = REPBROKER_EPROTOCOL; break;
            }
        }
        if (status != REPBROKER_OK) c->stats.permanent_failed++;
        for (rb_waiter **w = &c->waiters; *w; w = &(*w)->next) {
            if (*w == &waiter) { *w = waiter.next; break; }
        }
        pthread_cond_broadcast(&c->changed);  /* the reader may hold back on a full inbox without waiters */
    }
    c->users--;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->state);
    return status;
}

int repbroker_next_event(repbroker_client *c, int timeout_ms, repbroker_event *event) {
    if (!c || !event) return REPBROKER_EINVAL;
    pthread_mutex_lock(&c->state);
    if (c->closed) { pthread_mutex_unlock(&c->state); return REPBROKER_ECLOSED; }
    if (c->receiving) {
        say(c, "one thread receives at a time");
        pthread_mutex_unlock(&c->state);
        return REPBROKER_EINVAL;
    }
    c->receiving = 1;
    c->users++;
    free(c->current);
    c->current = NULL;
    uint64_t deadline = timeout_ms < 0 ? 0 : now_ns() + (uint64_t)timeout_ms * 1000000u;
    int status = REPBROKER_OK;
    /* What arrived before a failure is still handed out. */
    while (!c->head) {
        if (c->closed) { status = REPBROKER_ECLOSED; break; }
        if (c->failed) { status = REPBROKER_EUNAVAILABLE; break; }
        if (timeout_ms == 0 || !wait_until(c, deadline)) { status = REPBROKER_ETIMEDOUT; break; }
    }
    if (status == REPBROKER_OK) {
        rb_item *item = c->head;
        c->head = item->next;
        if (!c->head) c->tail = NULL;
        c->inbox_bytes -= item->bytes;
        c->current = item;
        *event = item->event;
    }
    c->receiving = 0;
    c->users--;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->state);
    return status;
}

int repbroker_acknowledge(repbroker_client *c, repbroker_lsn lsn) {
    if (!c) return REPBROKER_EINVAL;
    unsigned char body[8];
    put32(body, lsn.file);
    put32(body + 4, lsn.offset);
    return write_control(c, RB_FRAME_ACK, body, 8);
}

int repbroker_announce_master(repbroker_client *c, int32_t site) {
    if (!c || site < 0) return REPBROKER_EINVAL;
    unsigned char body[8];
    put32(body, (uint32_t)site);
    put32(body + 4, 0);
    return write_control(c, RB_FRAME_MASTER, body, 8);
}

int32_t repbroker_site_id(const repbroker_client *c) { return c ? c->site_id : 0; }
uint32_t repbroker_client_id(const repbroker_client *c) { return c ? c->client_id : 0; }
uint64_t repbroker_max_message(const repbroker_client *c) { return c ? c->max_message : 0; }

int repbroker_is_receiver(repbroker_client *c) {
    if (!c) return 0;
    pthread_mutex_lock(&c->state);
    int receiver = c->role_state == RB_ROLE_STATE_RECEIVER;
    pthread_mutex_unlock(&c->state);
    return receiver;
}

int repbroker_get_stats(repbroker_client *c, repbroker_stats *stats) {
    if (!c || !stats) return REPBROKER_EINVAL;
    pthread_mutex_lock(&c->state);
    *stats = c->stats;
    pthread_mutex_unlock(&c->state);
    return REPBROKER_OK;
}
