/*
 * repbroker shared-memory rings: one segment per client (a sealed memfd the broker creates and passes with
 * SCM_RIGHTS), holding two single-producer single-consumer rings: client to broker and broker to client.
 *
 * Segment: rb_shm_header (448 bytes), then the to-broker ring's data (ring_bytes), then the to-client ring's
 * data (ring_bytes). ring_bytes is a power of two. Positions (head, tail) are byte counts since the start,
 * never wrapped: the offset in the data is position & (ring_bytes - 1); head - tail is the bytes in use.
 *
 * A record is an 8-byte rb_record_header and `length` payload bytes, padded to a multiple of 8. It never
 * straddles the end of the data: when it would, the producer writes a WRAP record (length 0) and continues
 * at offset 0. A FRAME record's payload is one whole frame as on the socket (repbroker_frames.h), or the
 * last part of one. A frame larger than a quarter of the ring travels as FRAGMENT records of at most
 * ring_bytes / 4 - 8 bytes each and a last FRAME record: the first part holds the frame header, and the
 * parts add up to exactly the frame it announces. The to-broker ring carries MESSAGE frames only; the
 * to-client ring carries MESSAGE and SITE_EVENT frames for the receiver. Every other frame goes by the socket.
 *
 * Memory order: the producer writes a record, then stores head with release; the consumer loads head with
 * acquire, reads records, then stores tail with release; the producer loads tail with acquire before
 * reusing space. Sleeping: the consumer stores sleeping = 1, issues a seq_cst fence and loads head again;
 * only if the ring is still empty does it sleep (poll on its doorbell eventfd). The producer, after storing
 * head, issues a seq_cst fence and loads sleeping; if it is 1 and its exchange to 0 returns 1, it writes the
 * consumer's doorbell. producer_waiting is the same handshake the other way, for a producer that found the
 * ring full.
 */
#ifndef REPBROKER_RING_H
#define REPBROKER_RING_H

#include <stdint.h>

#define RB_SHM_MAGIC 0x48534252u /* "RBSH" read as little-endian */
#define RB_SHM_VERSION 2u
#define RB_CACHE_LINE 64u
#define RB_RECORD_ALIGN 8u
#define RB_RING_MIN_BYTES 4096u
#define RB_RING_MAX_BYTES (1u << 30)
#define RB_RING_DEFAULT_BYTES (1u << 20)

#define RB_RECORD_FRAME 1u
#define RB_RECORD_WRAP 2u
#define RB_RECORD_FRAGMENT 4u /* 3 was MARK in version 1; it is refused */

typedef struct rb_ring_control {
    uint64_t head;              /* line 0, written by the producer only */
    uint8_t pad0[56];
    uint64_t tail;              /* line 1, written by the consumer only */
    uint8_t pad1[56];
    uint32_t sleeping;          /* line 2: 1 while the consumer may sleep */
    uint32_t producer_waiting;  /* 1 while the producer waits for space */
    uint8_t pad2[56];
} rb_ring_control;

typedef struct rb_shm_header {
    uint32_t magic;             /* RB_SHM_MAGIC */
    uint16_t version;           /* RB_SHM_VERSION */
    uint16_t reserved;
    uint64_t ring_bytes;        /* data bytes of each ring, a power of two */
    uint64_t total_bytes;       /* the whole segment */
    uint8_t pad[40];
    rb_ring_control to_broker;  /* offset 64 */
    rb_ring_control to_client;  /* offset 256 */
} rb_shm_header;                /* data of to_broker at 448, of to_client at 448 + ring_bytes */

typedef struct rb_record_header {
    uint32_t length;            /* payload bytes (0 for WRAP, at least 1 otherwise) */
    uint32_t kind;              /* RB_RECORD_* */
} rb_record_header;

_Static_assert(sizeof(rb_ring_control) == 192, "ring control is three cache lines");
_Static_assert(sizeof(rb_shm_header) == 448, "segment header is 448 bytes");
_Static_assert(__builtin_offsetof(rb_shm_header, to_broker) == 64, "to_broker at 64");
_Static_assert(__builtin_offsetof(rb_shm_header, to_client) == 256, "to_client at 256");
_Static_assert(__builtin_offsetof(rb_ring_control, tail) == 64, "tail on its own line");
_Static_assert(__builtin_offsetof(rb_ring_control, sleeping) == 128, "flags on their own line");
_Static_assert(sizeof(rb_record_header) == 8, "record header is 8 bytes");

#endif
