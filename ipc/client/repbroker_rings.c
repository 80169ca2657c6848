/*
 * librepbroker's shared-memory transport (PROTOCOL.md, "Shared-memory rings"; layout in repbroker_ring.h).
 * The sending thread (one at a time, under the ring lock) produces MESSAGE frames into the to-broker ring;
 * the receiving thread (one at a time) consumes MESSAGE and SITE_EVENT frames from the to-client ring and
 * blocks on the data doorbell itself. Frames larger than a quarter of the ring travel as FRAGMENT records.
 * Every position and length read from the shared memory is read once and checked before use; a violation
 * ends the connection with its reason.
 */
#define _GNU_SOURCE
#include "client_internal.h"
#include "repbroker_ring.h"
#include "repbroker_sys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct rb_rings {
    unsigned char *base;
    size_t total;
    uint64_t size, mask;
    rb_ring_control *out, *in;        /* to-broker (this side produces), to-client (this side consumes) */
    unsigned char *out_data, *in_data;
    int broker_doorbell, data_doorbell, room_doorbell;
    uint64_t head, cached_tail;       /* the producer's private positions */
    uint64_t tail;                    /* the consumer's private position */
    unsigned char *frame;             /* the frame being joined, and the current event's bytes */
    size_t frame_used, frame_capacity, frame_expected;
    unsigned char *gather;            /* a large frame gathered before it goes in parts */
    size_t gather_capacity;
};

static void ring_doorbell(int fd) {
    uint64_t one = 1;
    ssize_t n;
    do { n = write(fd, &one, sizeof one); } while (n < 0 && errno == EINTR);
}

static void drain_doorbell(int fd) {
    uint64_t value;
    ssize_t n;
    do { n = read(fd, &value, sizeof value); } while (n < 0 && errno == EINTR);
}

int rb_rings_attach(int fds[4], uint64_t ring_bytes, rb_rings **out, char *reason, size_t reason_size) {
    *out = NULL;
    struct stat info;
    uint64_t total = sizeof(rb_shm_header) + 2 * ring_bytes;
    if (ring_bytes < RB_RING_MIN_BYTES || ring_bytes > RB_RING_MAX_BYTES || (ring_bytes & (ring_bytes - 1))
        || !rb_memfd_is_sealed(fds[0]) || fstat(fds[0], &info) != 0 || (uint64_t)info.st_size != total) {
        snprintf(reason, reason_size, "the broker's segment is not a sealed memfd of %llu bytes", (unsigned long long)total);
        return REPBROKER_EPROTOCOL;
    }
    void *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (base == MAP_FAILED) {
        snprintf(reason, reason_size, "mmap of the segment: %s", strerror(errno));
        return REPBROKER_ESYSTEM;
    }
    close(fds[0]);
    rb_shm_header *header = base;
    if (header->magic != RB_SHM_MAGIC || header->version != RB_SHM_VERSION || header->ring_bytes != ring_bytes) {
        munmap(base, total);
        snprintf(reason, reason_size, "the segment's header is not version %u for %llu-byte rings", RB_SHM_VERSION,
                 (unsigned long long)ring_bytes);
        return REPBROKER_EPROTOCOL;
    }
    rb_rings *r = calloc(1, sizeof *r);
    if (!r) { munmap(base, total); return REPBROKER_ENOMEM; }
    r->base = base;
    r->total = total;
    r->size = ring_bytes;
    r->mask = ring_bytes - 1;
    r->out = &header->to_broker;
    r->in = &header->to_client;
    r->out_data = r->base + sizeof(rb_shm_header);
    r->in_data = r->out_data + ring_bytes;
    r->broker_doorbell = fds[1];
    r->data_doorbell = fds[2];
    r->room_doorbell = fds[3];
    r->head = rb_atomic_load_relaxed_u64(&r->out->head);
    r->cached_tail = rb_atomic_load_acquire_u64(&r->out->tail);
    r->tail = rb_atomic_load_relaxed_u64(&r->in->tail);
    *out = r;
    return REPBROKER_OK;
}

void rb_rings_free(rb_rings *r) {
    if (!r) return;
    munmap(r->base, r->total);
    close(r->broker_doorbell);
    close(r->data_doorbell);
    close(r->room_doorbell);
    free(r->frame);
    free(r->gather);
    free(r);
}

/* ---- producing (the ring lock held) ---- */

/* Publishes what was written, and wakes the broker if it said it sleeps. */
static void publish(rb_rings *r) {
    rb_atomic_store_release_u64(&r->out->head, r->head);
    rb_atomic_thread_fence_seq_cst();
    if (rb_atomic_load_seq_cst_u32(&r->out->sleeping) == 1 && rb_atomic_exchange_seq_cst_u32(&r->out->sleeping, 0) == 1)
        ring_doorbell(r->broker_doorbell);
}

/* Waits until `need` bytes are free, up to `deadline`; 0 or an error (the connection's state is checked too). */
static int wait_for_room(repbroker_client *c, rb_rings *r, uint64_t need, uint64_t deadline) {
    for (;;) {
        r->cached_tail = rb_atomic_load_acquire_u64(&r->out->tail);
        if (r->head + need - r->cached_tail <= r->size) return REPBROKER_OK;
        publish(r);
        rb_atomic_store_seq_cst_u32(&r->out->producer_waiting, 1);
        rb_atomic_thread_fence_seq_cst();
        r->cached_tail = rb_atomic_load_acquire_u64(&r->out->tail);
        if (r->head + need - r->cached_tail <= r->size) return REPBROKER_OK;
        pthread_mutex_lock(&c->state);
        int status = c->closed ? REPBROKER_ECLOSED : c->failed ? REPBROKER_EUNAVAILABLE : REPBROKER_OK;
        pthread_mutex_unlock(&c->state);
        if (status) return status;
        uint64_t now = rb_now_ns();
        if (now >= deadline) return REPBROKER_ETIMEDOUT;
        uint64_t slice = (deadline - now) / 1000000u;
        if (rb_poll_two(r->room_doorbell, -1, (int)(slice > 100 ? 100 : slice + 1)) > 0) drain_doorbell(r->room_doorbell);
    }
}

/* Writes one record of `kind` whose payload is the pieces, wrapping first when it would straddle the end. */
static int write_record(repbroker_client *c, rb_rings *r, uint32_t kind, const struct iovec *pieces, int count,
                        size_t length, uint64_t deadline) {
    uint64_t need = 8 + ((length + 7) & ~(uint64_t)7);
    uint64_t to_end = r->size - (r->head & r->mask);
    uint64_t wrap = need > to_end ? to_end : 0;
    if (r->head + wrap + need - r->cached_tail > r->size) {
        int status = wait_for_room(c, r, wrap + need, deadline);
        if (status) return status;
    }
    if (wrap) {
        rb_record_header skip = {0, RB_RECORD_WRAP};
        memcpy(r->out_data + (r->head & r->mask), &skip, sizeof skip);
        r->head += wrap;
    }
    unsigned char *at = r->out_data + (r->head & r->mask);
    rb_record_header header = {(uint32_t)length, kind};
    memcpy(at, &header, sizeof header);
    at += sizeof header;
    for (int i = 0; i < count; i++) {
        if (pieces[i].iov_len) memcpy(at, pieces[i].iov_base, pieces[i].iov_len);
        at += pieces[i].iov_len;
    }
    r->head += need;
    return REPBROKER_OK;
}

int rb_ring_send(repbroker_client *c, rb_rings *r, const unsigned char *header, const void *control, size_t control_length,
                 const void *rec, size_t rec_length, uint64_t deadline) {
    size_t frame = 48 + control_length + rec_length, part_limit = r->size / 4 - 8;
    struct iovec pieces[3] = {{(void *)header, 48}, {(void *)control, control_length}, {(void *)rec, rec_length}};
    if (frame <= part_limit) {
        int status = write_record(c, r, RB_RECORD_FRAME, pieces, 3, frame, deadline);
        if (status == REPBROKER_OK) publish(r);
        return status;
    }
    /* Gathered once, then written in parts as the broker makes room. */
    if (frame > r->gather_capacity) {
        unsigned char *grown = realloc(r->gather, frame);
        if (!grown) return REPBROKER_ENOMEM;
        r->gather = grown;
        r->gather_capacity = frame;
    }
    memcpy(r->gather, header, 48);
    if (control_length) memcpy(r->gather + 48, control, control_length);
    if (rec_length) memcpy(r->gather + 48 + control_length, rec, rec_length);
    for (size_t offset = 0; offset < frame;) {
        size_t part = frame - offset > part_limit ? part_limit : frame - offset;
        struct iovec piece = {r->gather + offset, part};
        int status = write_record(c, r, offset + part < frame ? RB_RECORD_FRAGMENT : RB_RECORD_FRAME, &piece, 1, part,
                                  deadline);
        if (status) {
            /* Parts are in the ring already, and the broker would join the next frame onto them. */
            if (offset > 0) {
                pthread_mutex_lock(&c->state);
                rb_say(c, "a send stopped partway through a message in parts");
                rb_fail(c);
                pthread_mutex_unlock(&c->state);
                shutdown(c->fd, SHUT_RDWR);
            }
            return status;
        }
        offset += part;
        publish(r);
    }
    return REPBROKER_OK;
}

/* ---- consuming (the one receiving thread) ---- */

/* Appends a record's payload to the frame being joined. */
static int take_part(rb_rings *r, const unsigned char *payload, size_t length) {
    if (r->frame_used + length > r->frame_capacity) {
        size_t capacity = r->frame_capacity ? r->frame_capacity : 4096;
        while (capacity < r->frame_used + length) capacity *= 2;
        unsigned char *grown = realloc(r->frame, capacity);
        if (!grown) return REPBROKER_ENOMEM;
        r->frame = grown;
        r->frame_capacity = capacity;
    }
    memcpy(r->frame + r->frame_used, payload, length);
    r->frame_used += length;
    return REPBROKER_OK;
}

/* Hands the space read so far back to the broker, waking it if it waits for room. */
static void release(rb_rings *r) {
    rb_atomic_store_release_u64(&r->in->tail, r->tail);
    rb_atomic_thread_fence_seq_cst();
    if (rb_atomic_load_seq_cst_u32(&r->in->producer_waiting) == 1
        && rb_atomic_exchange_seq_cst_u32(&r->in->producer_waiting, 0) == 1)
        ring_doorbell(r->broker_doorbell);
}

/* Reads records until a whole frame is joined: 1 with the frame in r->frame, 0 when the ring is empty, or -1
   with the reason in `reason` (a record out of bounds, a frame that does not add up). */
static int next_frame(rb_rings *r, uint64_t max_frame, char *reason, size_t reason_size) {
    for (;;) {
        uint64_t head = rb_atomic_load_acquire_u64(&r->in->head);
        if (head == r->tail) return 0;
        if (head - r->tail > r->size || (r->tail & 7)) {
            snprintf(reason, reason_size, "ring positions out of range (head %llu, tail %llu)",
                     (unsigned long long)head, (unsigned long long)r->tail);
            return -1;
        }
        uint64_t offset = r->tail & r->mask, to_end = r->size - offset;
        rb_record_header record;
        memcpy(&record, r->in_data + offset, sizeof record);   /* read once: the broker may write it any time */
        if (record.kind == RB_RECORD_WRAP) {
            if (record.length != 0 || to_end > head - r->tail) { snprintf(reason, reason_size, "bad WRAP record"); return -1; }
            r->tail += to_end;
            continue;
        }
        uint64_t need = 8 + (((uint64_t)record.length + 7) & ~(uint64_t)7);
        if ((record.kind != RB_RECORD_FRAME && record.kind != RB_RECORD_FRAGMENT) || record.length == 0
            || record.length > r->size / 4 - 8 || need > to_end || need > head - r->tail) {
            snprintf(reason, reason_size, "bad record (kind %u, %u bytes) at offset %llu", record.kind, record.length,
                     (unsigned long long)offset);
            return -1;
        }
        if (r->frame_expected == 0) r->frame_used = 0;
        int status = take_part(r, r->in_data + offset + 8, record.length);
        r->tail += need;
        release(r);
        if (status) { snprintf(reason, reason_size, "no memory for a frame"); return -1; }
        if (r->frame_expected == 0) {
            if (r->frame_used < 8) { snprintf(reason, reason_size, "a first part shorter than a frame header"); return -1; }
            uint64_t announced = 8 + (uint64_t)get32(r->frame);
            if (announced > max_frame) { snprintf(reason, reason_size, "a frame of %llu bytes over the limit", (unsigned long long)announced); return -1; }
            r->frame_expected = announced;
        }
        if (r->frame_used > r->frame_expected || (record.kind == RB_RECORD_FRAME) != (r->frame_used == r->frame_expected)) {
            snprintf(reason, reason_size, "parts that do not add up to their frame (%zu of %zu bytes)", r->frame_used,
                     r->frame_expected);
            return -1;
        }
        if (record.kind == RB_RECORD_FRAME) {
            r->frame_expected = 0;
            return 1;
        }
    }
}

/* The frame in r->frame as an event (pointers into r->frame); 0 or -1 with the reason. */
static int frame_event(rb_rings *r, repbroker_event *event, char *reason, size_t reason_size) {
    const unsigned char *frame = r->frame, *body = frame + 8;
    uint32_t length = get32(frame);
    if (frame[5] != RB_FRAME_MAGIC || get16(frame + 6) != 0) { snprintf(reason, reason_size, "bad frame header in the ring"); return -1; }
    if (frame[4] == RB_FRAME_MESSAGE && length >= 40) {
        uint64_t control = get32(body + 24), rec = get32(body + 28);
        if (control + rec != (uint64_t)length - 40) { snprintf(reason, reason_size, "MESSAGE lengths do not fill it"); return -1; }
        *event = (repbroker_event){.kind = REPBROKER_EVENT_MESSAGE, .site = (int32_t)get32(body + 4),
                                   .control = body + 40, .control_length = control, .rec = body + 40 + control,
                                   .rec_length = rec, .lsn = {get32(body + 16), get32(body + 20)}, .flags = get32(body + 12)};
        return 0;
    }
    if (frame[4] == RB_FRAME_SITE_EVENT && length == 8 && get16(body + 4) <= 1) {
        *event = (repbroker_event){.kind = get16(body + 4) ? REPBROKER_EVENT_SITE_UP : REPBROKER_EVENT_SITE_DOWN,
                                   .site = (int32_t)get32(body)};
        return 0;
    }
    snprintf(reason, reason_size, "unexpected frame type 0x%02x in the to-client ring", frame[4]);
    return -1;
}

int rb_ring_next_event(repbroker_client *c, rb_rings *r, uint64_t generation, int timeout_ms, repbroker_event *event) {
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : rb_now_ns() + (uint64_t)timeout_ms * 1000000u;
    char reason[200];
    for (;;) {
        int got = next_frame(r, 8 + 40 + c->max_message, reason, sizeof reason);
        if (got == 1 && frame_event(r, event, reason, sizeof reason) == 0) {
            pthread_mutex_lock(&c->state);
            if (event->kind == REPBROKER_EVENT_MESSAGE) {
                c->stats.messages_received++;
                c->stats.bytes_received += event->control_length + event->rec_length;
            }
            pthread_mutex_unlock(&c->state);
            return REPBROKER_OK;
        }
        if (got != 0) {
            /* The broker wrote what the protocol does not allow: this connection ends (reconnecting, if set). */
            pthread_mutex_lock(&c->state);
            rb_say(c, "%s", reason);
            rb_fail(c);
            int fd = c->fd;
            pthread_mutex_unlock(&c->state);
            shutdown(fd, SHUT_RDWR);
            return REPBROKER_EPROTOCOL;
        }
        pthread_mutex_lock(&c->state);
        int status = c->closed ? REPBROKER_ECLOSED
                   : c->generation != generation ? REPBROKER_EUNAVAILABLE   /* a new connection: new rings */
                   : c->failed && !c->reconnect ? REPBROKER_EUNAVAILABLE : REPBROKER_OK;
        pthread_mutex_unlock(&c->state);
        if (status) return status;
        uint64_t now = rb_now_ns();
        if (now >= deadline) return REPBROKER_ETIMEDOUT;
        /* Say this side sleeps, look once more, then wait on the data doorbell (in slices, to see a close). */
        rb_atomic_store_seq_cst_u32(&r->in->sleeping, 1);
        rb_atomic_thread_fence_seq_cst();
        if (rb_atomic_load_acquire_u64(&r->in->head) == r->tail) {
            uint64_t slice = (deadline - now) / 1000000u;
            if (rb_poll_two(r->data_doorbell, -1, (int)(slice > 100 ? 100 : slice + 1)) > 0) drain_doorbell(r->data_doorbell);
        }
        rb_atomic_store_seq_cst_u32(&r->in->sleeping, 0);
    }
}
