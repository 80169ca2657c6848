/*
 * librepbroker's calls on an open client: sending (PERMANENT sends wait for their SEND_RESULT), taking events
 * from the inbox the reader thread fills, acknowledging, announcing the master, and what the client knows.
 */
#define _GNU_SOURCE
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- calls ---- */

static const char *policy_name(repbroker_ack_policy policy) {
    switch (policy) {
    case REPBROKER_ACK_ONE: return "one";
    case REPBROKER_ACK_QUORUM: return "quorum";
    case REPBROKER_ACK_ALL: return "all";
    default: return "none";
    }
}

int repbroker_send(repbroker_client *c, int32_t eid, const void *control, size_t control_length, const void *rec,
                   size_t rec_length, const repbroker_lsn *lsn, uint32_t flags) {
    if (!c) return REPBROKER_EINVAL;
    if (flags & ~0xFu) return rb_invalid(c, "flags 0x%x: only REPBROKER_REP_* (0x1 ... 0x8) are known", flags);
    if (!(eid > 0 || eid == REPBROKER_EID_BROADCAST || eid == REPBROKER_EID_MASTER))
        return rb_invalid(c, "destination %d is not a site id (> 0), REPBROKER_EID_BROADCAST or REPBROKER_EID_MASTER", eid);
    if ((control_length && !control) || (rec_length && !rec))
        return rb_invalid(c, "%s is NULL with a length of %zu", control_length && !control ? "control" : "rec",
                          control_length && !control ? control_length : rec_length);
    if ((uint64_t)control_length + rec_length > c->max_message) {
        pthread_mutex_lock(&c->state);
        rb_say(c, "control + rec are %llu bytes; the broker's limit is %llu",
               (unsigned long long)control_length + rec_length, (unsigned long long)c->max_message);
        pthread_mutex_unlock(&c->state);
        return REPBROKER_ETOOLARGE;
    }
    int permanent = (flags & REPBROKER_REP_PERMANENT) != 0;
    rb_waiter waiter = {0};
    pthread_mutex_lock(&c->state);
    int status = rb_usable(c);
    if (status) { pthread_mutex_unlock(&c->state); return status; }
    c->users++;
    if (permanent) {
        waiter.sequence = ++c->next_sequence;
        waiter.generation = c->generation;
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
    /* Over the rings only the ring lock is held (a sender waiting for room keeps the socket free for control
       frames); over the socket, the socket's write lock too. The rings change only under both. */
    pthread_mutex_lock(&c->ring_lock);
    if (c->rings) {
        status = rb_ring_send(c, c->rings, header, control, control_length, rec, rec_length,
                              rb_now_ns() + (uint64_t)c->send_timeout_ms * 1000000u);
    } else {
        pthread_mutex_lock(&c->write_lock);
        status = rb_write_all(c, vector, 3);
        pthread_mutex_unlock(&c->write_lock);
    }
    pthread_mutex_unlock(&c->ring_lock);

    pthread_mutex_lock(&c->state);
    if (status == REPBROKER_OK) {
        c->stats.messages_sent++;
        c->stats.bytes_sent += control_length + rec_length;
    }
    if (permanent) {
        /* Long enough for the ack policy's timeout and the broker's answer after it. */
        uint64_t wait_ms = c->send_timeout_ms;
        if (c->ack_policy != REPBROKER_ACK_NONE && c->ack_timeout_ms + 2000u > wait_ms) wait_ms = c->ack_timeout_ms + 2000u;
        int sent = status;
        status = rb_await(c, &waiter, rb_now_ns() + wait_ms * 1000000u, status);
        if (status == REPBROKER_OK) {
            switch (waiter.status) {
            case RB_SEND_OK: c->stats.permanent_acked++; break;
            case RB_SEND_QUEUE_FULL:
                rb_say(c, "a destination's queue is full: the message was queued nowhere");
                status = REPBROKER_EQUEUEFULL;
                break;
            case RB_SEND_PARTLY_QUEUED:
                rb_say(c, "queued for some sites and dropped at sites whose queue is full");
                status = REPBROKER_EQUEUEFULL;
                break;
            case RB_SEND_UNROUTABLE:
                rb_say(c, eid == REPBROKER_EID_MASTER ? "no master is known for the group"
                                                      : "site %d is not a member of the group", eid);
                status = REPBROKER_EUNROUTABLE;
                break;
            case RB_SEND_ACK_TIMEOUT:
                rb_say(c, "LSN %u/%u was not acknowledged as the %s policy asks within %u ms: %s",
                       lsn ? lsn->file : 0, lsn ? lsn->offset : 0, policy_name(c->ack_policy), c->ack_timeout_ms,
                       waiter.sites);
                status = REPBROKER_ENOTACKED;
                break;
            default:
                rb_say(c, "the broker answered with send status %u, which this library does not know", waiter.status);
                status = REPBROKER_EPROTOCOL;
                break;
            }
        } else if (sent == REPBROKER_OK && status == REPBROKER_ETIMEDOUT) {
            rb_say(c, "the broker did not answer the PERMANENT send within %llu ms", (unsigned long long)wait_ms);
        }
        if (status != REPBROKER_OK) c->stats.permanent_failed++;
    }
    c->users--;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->state);
    return status;
}

int repbroker_next_event(repbroker_client *c, int timeout_ms, repbroker_event *event) {
    if (!c) return REPBROKER_EINVAL;
    if (!event) return rb_invalid(c, "event is NULL");
    pthread_mutex_lock(&c->state);
    if (c->closed) { pthread_mutex_unlock(&c->state); return REPBROKER_ECLOSED; }
    if (c->receiving) {
        rb_say(c, "one thread receives at a time");
        pthread_mutex_unlock(&c->state);
        return REPBROKER_EINVAL;
    }
    c->receiving = 1;
    c->users++;
    free(c->current);
    c->current = NULL;
    /* The last event's rings are let go now (its pointers were valid until this call). */
    c->held = NULL;
    rb_rings_free(c->retired);
    c->retired = NULL;
    uint64_t deadline = timeout_ms < 0 ? 0 : rb_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int status = REPBROKER_OK;
    for (;;) {
        if (c->rings && !c->head) {
            /* Shared memory: this thread reads the to-client ring itself, without the lock. */
            rb_rings *rings = c->rings;
            uint64_t generation = c->generation, now = rb_now_ns();
            int remaining = timeout_ms < 0 ? -1 : deadline > now ? (int)((deadline - now) / 1000000u) : 0;
            pthread_mutex_unlock(&c->state);
            status = rb_ring_next_event(c, rings, generation, remaining, event);
            pthread_mutex_lock(&c->state);
            if (status == REPBROKER_OK) c->held = rings;
            if (c->retired && c->retired != c->held) {
                rb_rings_free(c->retired);
                c->retired = NULL;
            }
            /* A new connection: go on with its rings for the time left. */
            if (status == REPBROKER_EUNAVAILABLE && c->reconnect && !c->closed && c->generation != generation) continue;
            break;
        }
        /* The socket: what the reader thread put in the inbox (what arrived before a failure is still handed out). */
        uint64_t generation = c->generation;
        while (!c->head && !(c->rings && c->generation != generation)) {
            if (c->closed) { status = REPBROKER_ECLOSED; break; }
            /* Reconnecting, a receiver waits on (its next messages come on the new connection). */
            if (c->failed && !c->reconnect) { status = REPBROKER_EUNAVAILABLE; break; }
            if (timeout_ms == 0 || !rb_wait_until(c, deadline)) { status = REPBROKER_ETIMEDOUT; break; }
        }
        if (status != REPBROKER_OK || c->head) break;
    }
    if (status == REPBROKER_OK && !c->held) {
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

int repbroker_acknowledge(repbroker_client *c, repbroker_lsn lsn, int32_t site) {
    if (!c) return REPBROKER_EINVAL;
    if (site <= 0) return rb_invalid(c, "site %d: an ack names the site whose log it acknowledges (> 0)", site);
    unsigned char body[16];
    put32(body, lsn.file);
    put32(body + 4, lsn.offset);
    put32(body + 8, (uint32_t)site);
    put32(body + 12, 0);
    return rb_write_control(c, RB_FRAME_ACK, body, 16);
}

int repbroker_announce_master(repbroker_client *c, int32_t site) {
    if (!c) return REPBROKER_EINVAL;
    if (site < 0) return rb_invalid(c, "master site %d: a site id, or 0 for none", site);
    unsigned char body[8];
    put32(body, (uint32_t)site);
    put32(body + 4, 0);
    return rb_write_control(c, RB_FRAME_MASTER, body, 8);
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
    if (!c) return REPBROKER_EINVAL;
    if (!stats) return rb_invalid(c, "stats is NULL");
    pthread_mutex_lock(&c->state);
    *stats = c->stats;
    pthread_mutex_unlock(&c->state);
    return REPBROKER_OK;
}
