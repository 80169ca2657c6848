/*
 * librepbroker's application channels (PROTOCOL.md: SUBSCRIBE, CHANNEL, CHANNEL_RESULT). A channel send or
 * request is a CHANNEL frame with a fresh request id, waiting (as a rb_waiter) for its CHANNEL_RESULT or, for a
 * request, the reply CHANNEL with the same id. Messages and requests for this subscriber wait in a channel inbox
 * of their own, counted in the same inbox limit as replication messages.
 */
#define _GNU_SOURCE
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

enum { CHANNEL_HEADER = 32 };

/* A channel name the broker takes: 1 to 64 bytes of UTF-8. */
static int valid_channel(const char *channel, size_t *length) {
    return rb_valid_name(channel, 1, RB_MAX_GROUP_NAME, length);
}

static const char invalid_channel[] = "the channel name must be 1 to 64 bytes of UTF-8";

int repbroker_subscribe(repbroker_client *c, const char *channel) {
    size_t length;
    if (!c) return REPBROKER_EINVAL;
    if (!valid_channel(channel, &length)) return rb_invalid(c, invalid_channel);
    unsigned char body[4 + RB_MAX_GROUP_NAME];
    put16(body, (uint16_t)length);
    put16(body + 2, 0);
    memcpy(body + 4, channel, length);
    int status = rb_write_control(c, RB_FRAME_SUBSCRIBE, body, (uint32_t)(4 + length));
    if (status == REPBROKER_OK) {
        pthread_mutex_lock(&c->state);
        c->subscribed = 1;
        int known = 0;
        for (size_t i = 0; i < c->channel_count; i++) known |= !strcmp(c->channels[i], channel);
        char **grown = known ? NULL : realloc(c->channels, (c->channel_count + 1) * sizeof *grown);
        if (grown) {
            c->channels = grown;
            if ((c->channels[c->channel_count] = strdup(channel))) c->channel_count++;
        }
        pthread_mutex_unlock(&c->state);
    }
    return status;
}

/* Writes one CHANNEL frame (write lock taken here). */
static int write_channel(repbroker_client *c, const char *channel, size_t channel_length, int32_t site, uint16_t kind,
                         uint64_t request_id, uint32_t requester, const void *payload, size_t payload_length) {
    unsigned char header[8 + CHANNEL_HEADER];
    frame_header(header, RB_FRAME_CHANNEL, (uint32_t)(CHANNEL_HEADER + channel_length + payload_length));
    unsigned char *h = header + 8;
    put32(h, 0);
    put32(h + 4, 0);
    put32(h + 8, (uint32_t)site);
    put16(h + 12, kind);
    put16(h + 14, (uint16_t)channel_length);
    put64(h + 16, request_id);
    put32(h + 24, requester);
    put32(h + 28, (uint32_t)payload_length);
    struct iovec vector[3] = {{header, sizeof header}, {(void *)channel, channel_length}, {(void *)payload, payload_length}};
    pthread_mutex_lock(&c->write_lock);
    int status = rb_write_all(c, vector, 3);
    pthread_mutex_unlock(&c->write_lock);
    return status;
}

static int channel_status(uint32_t status) {
    switch (status) {
    case RB_CHANNEL_DELIVERED: return REPBROKER_OK;
    case RB_CHANNEL_NO_SUBSCRIBER: return REPBROKER_ENOSUBSCRIBER;
    case RB_CHANNEL_NO_MASTER: return REPBROKER_ENOMASTER;
    case RB_CHANNEL_UNROUTABLE: return REPBROKER_EUNROUTABLE;
    case RB_CHANNEL_QUEUE_FULL: return REPBROKER_EQUEUEFULL;
    case RB_CHANNEL_TIMED_OUT: return REPBROKER_ETIMEDOUT;
    default: return REPBROKER_EPROTOCOL;
    }
}

/* A channel send (kind message) or request: sends, then waits for the outcome. */
static int exchange(repbroker_client *c, const char *channel, int32_t site, const void *payload, size_t payload_length,
                    int timeout_ms, uint16_t kind, void **reply, size_t *reply_length) {
    size_t channel_length;
    if (!c) return REPBROKER_EINVAL;
    if (!valid_channel(channel, &channel_length)) return rb_invalid(c, invalid_channel);
    if (!(site > 0 || site == REPBROKER_EID_MASTER))
        return rb_invalid(c, "a channel destination is a site id (> 0) or REPBROKER_EID_MASTER, not %d", site);
    if (payload_length && !payload) return rb_invalid(c, "payload is NULL with a length of %zu", payload_length);
    if (timeout_ms < 0) return rb_invalid(c, "timeout_ms must be 0 or more, not %d", timeout_ms);
    if (payload_length > c->max_message) return REPBROKER_ETOOLARGE;
    rb_waiter waiter = {.channel = 1};
    pthread_mutex_lock(&c->state);
    int status = rb_usable(c);
    if (status) { pthread_mutex_unlock(&c->state); return status; }
    c->users++;
    waiter.sequence = ++c->next_sequence;
    waiter.generation = c->generation;
    waiter.next = c->waiters;
    c->waiters = &waiter;
    pthread_cond_broadcast(&c->changed);  /* a reader holding back for a full inbox reads on */
    pthread_mutex_unlock(&c->state);

    status = write_channel(c, channel, channel_length, site, (uint16_t)kind, waiter.sequence, 0, payload, payload_length);
    pthread_mutex_lock(&c->state);
    status = rb_await(c, &waiter, rb_now_ns() + (uint64_t)timeout_ms * 1000000u, status);
    pthread_mutex_unlock(&c->state);
    if (status == REPBROKER_ETIMEDOUT) {
        /* The broker counts requests that got no answer in time (channel_timeouts). */
        unsigned char body[16];
        put64(body, waiter.sequence);
        put32(body + 8, 0);
        put32(body + 12, RB_CHANNEL_TIMED_OUT);
        rb_write_control(c, RB_FRAME_CHANNEL_RESULT, body, 16);
    }
    if (status == REPBROKER_OK && !waiter.reply) status = channel_status(waiter.status);
    if (status == REPBROKER_OK && kind == RB_CHANNEL_REQUEST) {
        if (reply) *reply = waiter.reply; else free(waiter.reply);
        if (reply_length) *reply_length = waiter.reply_length;
    } else {
        free(waiter.reply);
    }
    pthread_mutex_lock(&c->state);
    c->users--;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->state);
    return status;
}

int repbroker_channel_send(repbroker_client *c, const char *channel, int32_t site, const void *payload,
                           size_t payload_length, int timeout_ms) {
    return exchange(c, channel, site, payload, payload_length, timeout_ms, RB_CHANNEL_MESSAGE, NULL, NULL);
}

int repbroker_request(repbroker_client *c, const char *channel, int32_t site, const void *payload, size_t payload_length,
                      int timeout_ms, void **reply, size_t *reply_length) {
    if (!c) return REPBROKER_EINVAL;
    if (!reply || !reply_length) return rb_invalid(c, "reply and reply_length are where the reply goes: not NULL");
    *reply = NULL;
    *reply_length = 0;
    return exchange(c, channel, site, payload, payload_length, timeout_ms, RB_CHANNEL_REQUEST, reply, reply_length);
}

void repbroker_free(void *pointer) { free(pointer); }

int repbroker_reply(repbroker_client *c, const repbroker_channel_message *request, const void *payload,
                    size_t payload_length) {
    size_t channel_length;
    if (!c) return REPBROKER_EINVAL;
    if (!request || !request->is_request) return rb_invalid(c, "only a request is answered");
    if (!valid_channel(request->channel, &channel_length)) return rb_invalid(c, invalid_channel);
    if (payload_length && !payload) return rb_invalid(c, "payload is NULL with a length of %zu", payload_length);
    if (payload_length > c->max_message) return REPBROKER_ETOOLARGE;
    pthread_mutex_lock(&c->state);
    int status = rb_usable(c);
    if (!status) c->users++;
    pthread_mutex_unlock(&c->state);
    if (status) return status;
    status = write_channel(c, request->channel, channel_length, request->site, RB_CHANNEL_REPLY, request->request_id,
                           request->requester, payload, payload_length);
    pthread_mutex_lock(&c->state);
    c->users--;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->state);
    return status;
}

int repbroker_next_channel_message(repbroker_client *c, int timeout_ms, repbroker_channel_message *message) {
    if (!c) return REPBROKER_EINVAL;
    if (!message) return rb_invalid(c, "message is NULL");
    pthread_mutex_lock(&c->state);
    if (!c->subscribed) {
        rb_say(c, "subscribe to a channel first");
        pthread_mutex_unlock(&c->state);
        return REPBROKER_EINVAL;
    }
    c->users++;
    free(c->channel_current);
    c->channel_current = NULL;
    uint64_t deadline = timeout_ms < 0 ? 0 : rb_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int status = REPBROKER_OK;
    while (!c->channel_head) {
        if (c->closed) { status = REPBROKER_ECLOSED; break; }
        if (c->failed && !c->reconnect) { status = REPBROKER_EUNAVAILABLE; break; }
        if (timeout_ms == 0 || !rb_wait_until(c, deadline)) { status = REPBROKER_ETIMEDOUT; break; }
    }
    if (status == REPBROKER_OK) {
        rb_channel_item *item = c->channel_head;
        c->channel_head = item->next;
        if (!c->channel_head) c->channel_tail = NULL;
        c->inbox_bytes -= item->bytes;
        c->channel_current = item;
        *message = item->message;
    }
    c->users--;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->state);
    return status;
}

static rb_waiter *channel_waiter(repbroker_client *c, uint64_t id) {
    for (rb_waiter *w = c->waiters; w; w = w->next) if (w->channel && w->sequence == id) return w;
    return NULL;
}

int rb_handle_channel(repbroker_client *c, uint8_t type, const unsigned char *body, uint32_t length) {
    if (type == RB_FRAME_CHANNEL_RESULT) {
        if (length != 16) { rb_say(c, "malformed CHANNEL_RESULT"); return REPBROKER_EPROTOCOL; }
        rb_waiter *w = channel_waiter(c, get64(body));
        if (w && !w->done) {
            w->done = 1;
            w->status = get32(body + 12);
            pthread_cond_broadcast(&c->changed);
        }
        return 0;
    }
    if (length < CHANNEL_HEADER) { rb_say(c, "CHANNEL of %u bytes is shorter than its header", length); return REPBROKER_EPROTOCOL; }
    uint16_t kind = get16(body + 12);
    size_t name_length = get16(body + 14), payload_length = get32(body + 28);
    if (kind > RB_CHANNEL_REPLY || name_length < 1 || name_length > RB_MAX_GROUP_NAME
        || CHANNEL_HEADER + name_length + payload_length != length) {
        rb_say(c, "malformed CHANNEL (kind %u, lengths %zu and %zu in %u bytes)", kind, name_length, payload_length, length);
        return REPBROKER_EPROTOCOL;
    }
    const unsigned char *name = body + CHANNEL_HEADER, *payload = name + name_length;
    if (kind == RB_CHANNEL_REPLY) {
        rb_waiter *w = channel_waiter(c, get64(body + 16));
        if (!w || w->done) return 0;  /* an answer after its request gave up */
        w->reply = malloc(payload_length ? payload_length : 1);
        if (!w->reply) { rb_say(c, "no memory for a reply of %zu bytes", payload_length); return REPBROKER_ENOMEM; }
        memcpy(w->reply, payload, payload_length);
        w->reply_length = payload_length;
        w->done = 1;
        pthread_cond_broadcast(&c->changed);
        return 0;
    }
    rb_channel_item *item = malloc(sizeof *item + name_length + 1 + payload_length);
    if (!item) { rb_say(c, "no memory for a channel message of %zu bytes", payload_length); return REPBROKER_ENOMEM; }
    memcpy(item->data, name, name_length);
    item->data[name_length] = 0;
    memcpy(item->data + name_length + 1, payload, payload_length);
    item->bytes = payload_length;
    item->message = (repbroker_channel_message){
        .channel = (const char *)item->data, .site = (int32_t)get32(body + 4), .is_request = kind == RB_CHANNEL_REQUEST,
        .request_id = get64(body + 16), .requester = get32(body + 24), .payload = item->data + name_length + 1,
        .payload_length = payload_length};
    item->next = NULL;
    if (c->channel_tail) c->channel_tail->next = item; else c->channel_head = item;
    c->channel_tail = item;
    c->inbox_bytes += item->bytes;
    pthread_cond_broadcast(&c->changed);
    return 0;
}

void rb_free_channels(repbroker_client *c) {
    for (rb_channel_item *i = c->channel_head, *next; i; i = next) { next = i->next; free(i); }
    free(c->channel_current);
}
