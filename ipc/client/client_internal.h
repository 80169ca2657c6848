/*
 * librepbroker's private parts, shared by its files: the client's state, the frame field helpers, and the
 * functions one file gives the others. Hidden from the library's ABI. The files call downwards only:
 *   repbroker_client.c (reader thread, open, close)
 *     -> repbroker_send.c, repbroker_channels.c, repbroker_connect.c -> repbroker_rings.c -> repbroker_common.c
 */
#ifndef REPBROKER_CLIENT_INTERNAL_H
#define REPBROKER_CLIENT_INTERNAL_H

#include "repbroker_client.h"
#include "repbroker_frames.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define RB_HIDDEN __attribute__((visibility("hidden")))

typedef struct rb_rings rb_rings;   /* repbroker_rings.c */

/* A received message or site event, in the inbox. */
typedef struct rb_item {
    struct rb_item *next;
    repbroker_event event;
    size_t bytes;            /* control + rec, for the inbox limit */
    unsigned char data[];    /* control bytes, then rec bytes */
} rb_item;

/* A PERMANENT send waiting for its SEND_RESULT, or a channel send or request waiting for its CHANNEL_RESULT or
   reply (`channel` set; they share the sequence numbers, which are the channel request ids). */
typedef struct rb_waiter {
    struct rb_waiter *next;
    uint64_t sequence;
    uint64_t generation;          /* the connection it was sent on: a reconnect fails it */
    int channel;
    int done;
    uint32_t status;
    char sites[160];              /* ack timeout: "acknowledged by sites 2; not by 3, 5" (from SEND_RESULT) */
    unsigned char *reply;         /* a request's reply payload (malloc'd; handed to the caller) */
    size_t reply_length;
} rb_waiter;

/* A channel message or request for this subscriber. */
typedef struct rb_channel_item {
    struct rb_channel_item *next;
    repbroker_channel_message message;
    size_t bytes;
    unsigned char data[];         /* channel name, a NUL, then the payload */
} rb_channel_item;

struct repbroker_client {
    int fd;                       /* changed only under both locks (the reader, reconnecting) */
    char path[108];
    /* REGISTER and ACK_POLICY: [0] at RB_PROTOCOL_VERSION (speaking back to the oldest), [1] at the oldest alone,
       for a broker of that version, which refuses the newer REGISTER with ERROR 1 (version). */
    unsigned char request[2][8 + 20 + RB_MAX_GROUP_NAME + RB_MAX_CLIENT_NAME + 16];
    size_t request_length[2];
    uint16_t protocol_version;    /* what the broker answered in WELCOME */
    uint32_t refused_code;        /* the ERROR code of the last refused registration */
    int reconnect;
    repbroker_transport transport;
    rb_rings *rings;              /* the shared-memory rings of the current connection, if granted */
    rb_rings *retired;            /* rings of a replaced connection the receiving thread may still hold */
    rb_rings *held;               /* the rings whose memory the last event points into */
    uint64_t generation;          /* connections so far (1 after open) */
    char **channels;              /* subscribed, to subscribe again on a new connection */
    size_t channel_count;
    pthread_t reader;
    int reader_started;
    pthread_mutex_t ring_lock;    /* one producer at a time in the to-broker ring (taken before write_lock) */
    pthread_mutex_t write_lock;   /* one writer at a time on the socket: a sender waiting for ring room never holds
                                     it, so control frames (acks, replies) do not wait for ring room */
    unsigned backoff_ms;          /* the next reconnect's delay: doubles while registrations end at once */
    uint64_t connected_at_ns;     /* when the current connection registered */
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
    int subscribed;
    rb_channel_item *channel_head, *channel_tail, *channel_current;
    unsigned send_timeout_ms, ack_timeout_ms;
    repbroker_ack_policy ack_policy;
    repbroker_stats stats;
    /* The reader's buffer: bytes read and not yet parsed. */
    unsigned char *input;
    size_t input_used, input_capacity;
};


/* ---- little-endian fields ---- */

static inline void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

static inline void frame_header(unsigned char *p, uint8_t type, uint32_t length) {
    put32(p, length);
    p[4] = type;
    p[5] = RB_FRAME_MAGIC;
    put16(p + 6, 0);
}


/* ---- repbroker_common.c: the helpers below every other file ---- */

RB_HIDDEN void rb_say(repbroker_client *c, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Keeps the reason (taking the state lock) and returns REPBROKER_EINVAL. */
RB_HIDDEN int rb_invalid(repbroker_client *c, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Whether `text` is a name the broker takes: UTF-8 of `min` ... `max` bytes (its length in *length). */
RB_HIDDEN int rb_valid_name(const char *text, size_t min, size_t max, size_t *length);
RB_HIDDEN void rb_fail(repbroker_client *c);
RB_HIDDEN uint64_t rb_now_ns(void);
RB_HIDDEN int rb_wait_until(repbroker_client *c, uint64_t deadline_ns);
RB_HIDDEN int rb_write_all(repbroker_client *c, struct iovec *vector, int count);
RB_HIDDEN int rb_usable(repbroker_client *c);
RB_HIDDEN int rb_write_control(repbroker_client *c, uint8_t type, const unsigned char *body, uint32_t length);
/* Waits (state lock held) until `waiter` is answered, the client closes or fails, its connection is replaced,
   or `deadline_ns` passes; then takes it off the waiter list. `status` is what the send itself returned. */
RB_HIDDEN int rb_await(repbroker_client *c, rb_waiter *waiter, uint64_t deadline_ns, int status);

/* ---- repbroker_channels.c ---- */

/* The reader's part of channels (state lock held): a CHANNEL or CHANNEL_RESULT frame; 0 or the error that ends
   the connection. */
RB_HIDDEN int rb_handle_channel(repbroker_client *c, uint8_t type, const unsigned char *body, uint32_t length);
RB_HIDDEN void rb_free_channels(repbroker_client *c);

/* ---- repbroker_connect.c (on common and rings) ---- */

/* Connects, registers and reads WELCOME into the client's fields (the reader's input buffer is used and reset);
   *fd is the new connection, *rings its rings (NULL on the socket transport). */
RB_HIDDEN int rb_dial(repbroker_client *c, int *fd, rb_rings **rings, char *reason, size_t reason_size,
                      int handshake_seconds);
/* The reader's loop after a failure: dials with backoff until connected (1) or closed (0). */
RB_HIDDEN int rb_reconnect(repbroker_client *c);

/* ---- repbroker_rings.c (on common) ---- */

RB_HIDDEN int rb_rings_attach(int fds[4], uint64_t ring_bytes, rb_rings **rings, char *reason, size_t reason_size);
RB_HIDDEN void rb_rings_free(rb_rings *rings);
/* A MESSAGE into the to-broker ring (ring lock held), waiting for room until `deadline`. */
RB_HIDDEN int rb_ring_send(repbroker_client *c, rb_rings *rings, const unsigned char *header, const void *control,
                           size_t control_length, const void *rec, size_t rec_length, uint64_t deadline);
/* The next event from the to-client ring (the receiving thread); REPBROKER_EUNAVAILABLE once the connection
   of `generation` is replaced. */
RB_HIDDEN int rb_ring_next_event(repbroker_client *c, rb_rings *rings, uint64_t generation, int timeout_ms,
                                 repbroker_event *event);

#endif
