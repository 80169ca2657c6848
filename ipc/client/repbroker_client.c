/*
 * librepbroker's front end (ipc/include/repbroker_client.h, from ipc/PROTOCOL.md alone): the reader thread,
 * open and close; the top of the library's files (client_internal.h gives their order). One socket per
 * client; the reader thread reads every frame the broker sends on it: SEND_RESULT wakes the sender waiting
 * for it, ROLE updates the role, channel frames go to repbroker_channels.c, and (without rings) MESSAGE and
 * SITE_EVENT go to a bounded inbox that repbroker_next_event takes from; ERROR and anything malformed end the
 * connection with the reason kept, and it reconnects (repbroker_connect.c). Rings: repbroker_rings.c. Every
 * length read from the socket is checked against the frame limits before it is used.
 */
#define _GNU_SOURCE
#include "client_internal.h"

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

/* Why the calling thread's last repbroker_open failed (there is no client to ask). */
static _Thread_local char open_error[256];
const char *repbroker_last_error(repbroker_client *c) { return c ? c->last_error : open_error; }

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
        if (c->rings) { rb_say(c, "a MESSAGE on the socket of a client with rings"); return REPBROKER_EPROTOCOL; }
        if (length < 40) { rb_say(c, "MESSAGE of %u bytes is shorter than its header", length); return REPBROKER_EPROTOCOL; }
        uint64_t control = get32(body + 24), rec = get32(body + 28);
        if (control + rec != (uint64_t)length - 40) {
            rb_say(c, "MESSAGE lengths %llu + %llu do not fill its %u-byte body", (unsigned long long)control,
                (unsigned long long)rec, length);
            return REPBROKER_EPROTOCOL;
        }
        rb_item *item = malloc(sizeof *item + control + rec);
        if (!item) { rb_say(c, "no memory for a message of %llu bytes", (unsigned long long)(control + rec)); return REPBROKER_ENOMEM; }
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
        if (c->rings) { rb_say(c, "a SITE_EVENT on the socket of a client with rings"); return REPBROKER_EPROTOCOL; }
        if (length != 8 || get16(body + 4) > 1) { rb_say(c, "malformed SITE_EVENT"); return REPBROKER_EPROTOCOL; }
        rb_item *item = malloc(sizeof *item);
        if (!item) return REPBROKER_ENOMEM;
        item->bytes = 0;
        item->event = (repbroker_event){.kind = get16(body + 4) ? REPBROKER_EVENT_SITE_UP : REPBROKER_EVENT_SITE_DOWN,
                                        .site = (int32_t)get32(body)};
        push(c, item);
        return 0;
    }
    case RB_FRAME_SEND_RESULT: {
        uint32_t acked = length >= 16 ? get16(body + 12) : 0, missing = length >= 16 ? get16(body + 14) : 0;
        if (length < 16 || acked > RB_MAX_MEMBERS || missing > RB_MAX_MEMBERS || length != 16 + 4 * (acked + missing)) {
            rb_say(c, "malformed SEND_RESULT of %u bytes", length);
            return REPBROKER_EPROTOCOL;
        }
        uint64_t sequence = get64(body);
        for (rb_waiter *w = c->waiters; w; w = w->next) {
            if (w->sequence != sequence || w->channel) continue;
            w->done = 1;
            w->status = get32(body + 8);
            /* Which sites acknowledged the LSN in time, and which did not (with an ack timeout). */
            size_t at = 0;
            for (uint32_t list = 0; list < 2 && at < sizeof w->sites; list++) {
                uint32_t first = list == 0 ? 0 : acked, count = list == 0 ? acked : missing;
                at += (size_t)snprintf(w->sites + at, sizeof w->sites - at, list == 0 ? "acknowledged by sites" : "; not by");
                for (uint32_t i = 0; i < count && at < sizeof w->sites; i++)
                    at += (size_t)snprintf(w->sites + at, sizeof w->sites - at, "%s %d", i ? "," : "",
                                           (int32_t)get32(body + 16 + 4 * (first + i)));
                if (count == 0 && at < sizeof w->sites) at += (size_t)snprintf(w->sites + at, sizeof w->sites - at, " none");
            }
            pthread_cond_broadcast(&c->changed);
        }
        return 0;
    }
    case RB_FRAME_CHANNEL:
    case RB_FRAME_CHANNEL_RESULT:
        return rb_handle_channel(c, type, body, length);
    case RB_FRAME_ROLE:
        if (length != 4) { rb_say(c, "malformed ROLE"); return REPBROKER_EPROTOCOL; }
        c->role_state = get16(body);
        pthread_cond_broadcast(&c->changed);
        return 0;
    case RB_FRAME_ERROR: {
        uint32_t reason = length >= 4 ? length - 4 : 0;
        rb_say(c, "the broker closed the connection: error %u: %.*s", length >= 4 ? get32(body) : 0, (int)(reason > 200 ? 200 : reason),
            (const char *)body + 4);
        return REPBROKER_EUNAVAILABLE;
    }
    default:
        rb_say(c, "unexpected frame type 0x%02x from the broker", type);
        return REPBROKER_EPROTOCOL;
    }
}

/* The limit on a frame's body, by type, checked before the body is waited for. */
static uint64_t body_limit(const repbroker_client *c, uint8_t type) {
    if (type == RB_FRAME_MESSAGE) return 40 + c->max_message;
    if (type == RB_FRAME_CHANNEL) return 32 + RB_MAX_GROUP_NAME + c->max_message;
    return RB_MAX_CONTROL_BODY;
}

/* Parses every whole frame in the input buffer (state lock held); 0, or the error that ends the connection. */
static int parse_input(repbroker_client *c) {
    size_t at = 0;
    while (c->input_used - at >= 8) {
        const unsigned char *header = c->input + at;
        uint32_t length = get32(header);
        if (header[5] != RB_FRAME_MAGIC || get16(header + 6) != 0) { rb_say(c, "bad frame header from the broker"); return REPBROKER_EPROTOCOL; }
        if (length > body_limit(c, header[4])) { rb_say(c, "frame of %u bytes over its limit", length); return REPBROKER_EPROTOCOL; }
        if (c->input_used - at - 8 < length) {
            /* Room for the whole frame, then wait for the rest. */
            if (8 + (size_t)length > c->input_capacity) {
                unsigned char *grown = realloc(c->input, 8 + (size_t)length);
                if (!grown) { rb_say(c, "no memory for a frame of %u bytes", length); return REPBROKER_ENOMEM; }
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
            rb_say(c, "input buffer full");
            rb_fail(c);
            pthread_mutex_unlock(&c->state);
            break;
        }
        ssize_t got = read(c->fd, c->input + c->input_used, c->input_capacity - c->input_used);
        if (got < 0 && errno == EINTR) continue;
        pthread_mutex_lock(&c->state);
        int status = REPBROKER_OK;
        if (got <= 0) {
            /* A sender that dropped the connection (a send timeout) said why already. */
            if (!c->closed && !c->failed)
                rb_say(c, got == 0 ? "the broker closed the connection" : "read from the broker failed: %s", strerror(errno));
            status = REPBROKER_EUNAVAILABLE;
        } else {
            c->input_used += (size_t)got;
            status = parse_input(c);
        }
        if (status) {
            rb_fail(c);
            int closed = c->closed;
            pthread_mutex_unlock(&c->state);
            shutdown(c->fd, SHUT_RDWR);
            /* Without reconnecting, or once closed, the reader is done; otherwise it dials until it is back. */
            if (closed || !c->reconnect || !rb_reconnect(c)) break;
            /* Frames that came with the new WELCOME. */
            pthread_mutex_lock(&c->state);
            if (parse_input(c)) rb_fail(c);
            pthread_mutex_unlock(&c->state);
            continue;
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
    o->reconnect = 1;
    o->transport = REPBROKER_TRANSPORT_AUTOMATIC;
    o->ring_bytes = 1u << 20;
}

static void destroy(repbroker_client *c) {
    if (c->fd >= 0) close(c->fd);
    for (rb_item *i = c->head, *next; i; i = next) { next = i->next; free(i); }
    free(c->current);
    rb_rings_free(c->rings);
    rb_rings_free(c->retired);
    rb_free_channels(c);
    for (size_t i = 0; i < c->channel_count; i++) free(c->channels[i]);
    free(c->channels);
    free(c->input);
    pthread_mutex_destroy(&c->ring_lock);
    pthread_mutex_destroy(&c->write_lock);
    pthread_mutex_destroy(&c->state);
    pthread_cond_destroy(&c->changed);
    free(c);
}

/* repbroker_open's argument check: NULL, or why `o` is refused. */
static const char *invalid_options(const repbroker_options *o, const char *group, const char *name,
                                   size_t *group_length, size_t *name_length) {
    if (!rb_valid_name(group, 1, RB_MAX_GROUP_NAME, group_length)) return "the group name must be 1 to 64 bytes of UTF-8";
    if (!rb_valid_name(name, 0, RB_MAX_CLIENT_NAME, name_length)) return "the client name must be at most 64 bytes of UTF-8";
    if ((o->roles & ~(unsigned)(REPBROKER_ROLE_SENDER | REPBROKER_ROLE_RECEIVER)) || o->roles == 0)
        return "roles must be REPBROKER_ROLE_SENDER and/or REPBROKER_ROLE_RECEIVER";
    if (o->ack_policy < REPBROKER_ACK_NONE || o->ack_policy > REPBROKER_ACK_ALL) return "unknown ack policy";
    if (o->ack_timeout_ms < 1 || o->ack_timeout_ms > 600000) return "ack_timeout_ms must be 1 ... 600000";
    if (o->send_timeout_ms < 1) return "send_timeout_ms must be at least 1";
    if (o->transport < REPBROKER_TRANSPORT_AUTOMATIC || o->transport > REPBROKER_TRANSPORT_SHARED_MEMORY)
        return "unknown transport";
    if (o->transport != REPBROKER_TRANSPORT_SOCKET && (o->ring_bytes < 4096 || o->ring_bytes > (1u << 30)))
        return "ring_bytes must be 4096 ... 1 GiB";
    if (o->socket_path && strlen(o->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return "the socket path is longer than a Unix socket address takes";
    return NULL;
}

int repbroker_open(const repbroker_options *options, repbroker_client **out) {
    open_error[0] = 0;
    if (!out) {
        snprintf(open_error, sizeof open_error, "no place for the client (client is NULL)");
        return REPBROKER_EINVAL;
    }
    *out = NULL;
    repbroker_options o;
    if (options) o = *options; else repbroker_options_init(&o);
    const char *group = o.group ? o.group : "default";
    const char *name = o.name ? o.name : "";
    size_t group_length = 0, name_length = 0;
    const char *invalid = invalid_options(&o, group, name, &group_length, &name_length);
    if (invalid) {
        snprintf(open_error, sizeof open_error, "%s", invalid);
        return REPBROKER_EINVAL;
    }
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (o.socket_path) {
        snprintf(path, sizeof path, "%s", o.socket_path);
    } else {
        const char *runtime = getenv("XDG_RUNTIME_DIR");
        if (runtime && *runtime) snprintf(path, sizeof path, "%s/repbroker/broker.sock", runtime);
        else snprintf(path, sizeof path, "/tmp/repbroker-%u/broker.sock", (unsigned)getuid());
    }
    repbroker_client *c = calloc(1, sizeof *c);
    if (!c) return REPBROKER_ENOMEM;
    c->fd = -1;
    c->backoff_ms = 100;
    pthread_mutex_init(&c->ring_lock, NULL);
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

    c->reconnect = o.reconnect;
    c->transport = o.transport;
    snprintf(c->path, sizeof c->path, "%s", path);
    /* REGISTER, then ACK_POLICY, in one write: kept for every reconnect, at the newest version (its fixed part
       20 bytes: the oldest version spoken after ring_bytes) and at the oldest (16 bytes). */
    for (int which = 0; which < 2; which++) {
        uint16_t version = which == 0 ? RB_PROTOCOL_VERSION : RB_PROTOCOL_VERSION_OLDEST;
        size_t fixed = version >= 6 ? 20 : 16;
        size_t register_length = fixed + group_length + name_length;
        unsigned char *request = c->request[which];
        frame_header(request, RB_FRAME_REGISTER, (uint32_t)register_length);
        unsigned char *body = request + 8;
        put16(body, version);
        put16(body + 2, (uint16_t)o.roles);
        put32(body + 4, (uint32_t)getpid());
        put16(body + 8, (uint16_t)group_length);
        put16(body + 10, (uint16_t)name_length);
        put32(body + 12, o.transport == REPBROKER_TRANSPORT_SOCKET ? 0 : o.ring_bytes);
        if (fixed == 20) {
            put16(body + 16, RB_PROTOCOL_VERSION_OLDEST);
            put16(body + 18, 0);
        }
        memcpy(body + fixed, group, group_length);
        memcpy(body + fixed + group_length, name, name_length);
        unsigned char *policy = body + register_length;
        frame_header(policy, RB_FRAME_ACK_POLICY, 8);
        put16(policy + 8, (uint16_t)o.ack_policy);
        put16(policy + 10, 0);
        put32(policy + 12, o.ack_timeout_ms);
        c->request_length[which] = 8 + register_length + 16;
    }
    char reason[256] = "";
    int status = rb_dial(c, &c->fd, &c->rings, reason, sizeof reason, 10);
    if (status) {
        snprintf(open_error, sizeof open_error, "%s", reason);
        destroy(c);
        return status;
    }
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
    int fd = c->fd;
    pthread_mutex_unlock(&c->state);
    shutdown(fd, SHUT_RDWR);
    if (c->reader_started) pthread_join(c->reader, NULL);
    pthread_mutex_lock(&c->state);
    while (c->users > 0) pthread_cond_wait(&c->changed, &c->state);
    pthread_mutex_unlock(&c->state);
    destroy(c);
}

