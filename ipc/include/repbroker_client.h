/*
 * librepbroker: the repbroker client for C programs (and anything with a C FFI), a second implementation of
 * ipc/PROTOCOL.md in C11 with POSIX threads. Self-contained: it needs no db.h; Berkeley DB's values (EIDs,
 * DB_REP_* flags, DB_LSN) are carried as the same numbers.
 *
 * Build and link:  cc app.c $(pkg-config --cflags --libs repbroker)   or   cc app.c -I... -L... -lrepbroker -lpthread
 *
 * Transport: a client is one connection to the local broker's Unix socket, registered in one group with the
 * roles it asked for, and (by default) two shared-memory rings the broker grants it for messages both ways.
 * Messages to other sites go through the broker.
 *
 * Threads: every function may be called from any thread. Sends from several threads are serialized (a send
 * never waits for a receive). Over the rings, a send waiting for room in its ring holds no lock that the control
 * calls need: repbroker_acknowledge, repbroker_announce_master, channel calls and replies go by the socket at
 * once. One thread at a time receives (repbroker_next_event); a second one gets REPBROKER_EINVAL. A reader
 * thread inside the library reads the socket: it answers PERMANENT sends and fills the inbox that
 * repbroker_next_event takes from, so a PERMANENT send may be made from the thread that handles received
 * messages.
 *
 * Failure: when the connection to the broker fails (the broker stopped or restarted), calls return
 * REPBROKER_EUNAVAILABLE (a PERMANENT send in flight too) while the library dials the broker again (after
 * 100 ms, doubling to 2 s; a connection that ended within a second of registering does not start the delays
 * again, so a broker that closes every registration is not dialled ten times a second), registers anew (the
 * same group, name and roles; channels subscribed again) and goes on; messages in the inbox are still handed
 * out. With `reconnect` 0 the client stays failed: close it and open a new one. The Swift client does the same.
 *
 * Names (group, client, channel) are UTF-8 of the lengths given below; anything else is REPBROKER_EINVAL where
 * it is given, with a reason, and never reaches the broker.
 *
 * Errors: every function returns 0 or a repbroker_error; repbroker_strerror names it, and
 * repbroker_last_error gives the reason for the client's last failure: an invalid argument (every
 * REPBROKER_EINVAL says which and why), the broker's refusal, the sites that did not acknowledge, or the system's
 * error. Nothing is reported through errno.
 */
#ifndef REPBROKER_CLIENT_H
#define REPBROKER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum repbroker_error {
    REPBROKER_OK = 0,
    REPBROKER_EINVAL = 1,        /* an argument is out of range (the reason: repbroker_last_error) */
    REPBROKER_EUNAVAILABLE = 2,  /* the broker cannot be reached, or the connection to it is gone */
    REPBROKER_ECLOSED = 3,       /* repbroker_close was called */
    REPBROKER_ETIMEDOUT = 4,     /* nothing arrived in time, a send found no room in time, or its result did not come */
    REPBROKER_ETOOLARGE = 5,     /* control + rec exceed the broker's limit (repbroker_max_message) */
    REPBROKER_EQUEUEFULL = 6,    /* PERMANENT: a destination's queue is full; nothing was sent there */
    REPBROKER_EUNROUTABLE = 7,   /* no such site in the group, or (REPBROKER_EID_MASTER) no master known */
    REPBROKER_ENOTACKED = 8,     /* PERMANENT: sent, but too few sites acknowledged it in the ack timeout */
    REPBROKER_EREFUSED = 9,      /* the broker refused this client (version, limits, allow list) */
    REPBROKER_EPROTOCOL = 10,    /* the broker sent what this library does not understand */
    REPBROKER_ENOMEM = 11,
    REPBROKER_ESYSTEM = 12,      /* a system call failed unexpectedly */
    REPBROKER_ENOSUBSCRIBER = 13, /* channels: nobody at the destination site subscribes to that channel */
    REPBROKER_ENOMASTER = 14     /* channels: REPBROKER_EID_MASTER, and no master is known */
} repbroker_error;

/* Berkeley DB's environment ids and rep_send flags, as repbroker carries them. */
#define REPBROKER_EID_BROADCAST (-1) /* DB_EID_BROADCAST: every other site */
#define REPBROKER_EID_MASTER (-3)    /* the site last announced as the group's master */
#define REPBROKER_REP_ANYWHERE 0x1u
#define REPBROKER_REP_NOBUFFER 0x2u
#define REPBROKER_REP_PERMANENT 0x4u /* the send waits until the ack policy is met (or fails) */
#define REPBROKER_REP_REREQUEST 0x8u

#define REPBROKER_ROLE_SENDER 0x1u
#define REPBROKER_ROLE_RECEIVER 0x2u  /* one client per group and site receives; others stand by */

typedef enum repbroker_ack_policy {
    REPBROKER_ACK_NONE = 0,   /* PERMANENT returns once the message is queued for every destination */
    REPBROKER_ACK_ONE = 1,    /* ... and one other site acknowledged its LSN */
    REPBROKER_ACK_QUORUM = 2, /* ... a majority of the group's sites, this one included */
    REPBROKER_ACK_ALL = 3     /* ... every other site */
} repbroker_ack_policy;

/* A log sequence number, as DB_LSN. */
typedef struct repbroker_lsn {
    uint32_t file;
    uint32_t offset;
} repbroker_lsn;

typedef enum repbroker_transport {
    REPBROKER_TRANSPORT_AUTOMATIC = 0,     /* shared-memory rings when the broker offers them, else the socket */
    REPBROKER_TRANSPORT_SOCKET = 1,        /* every frame on the Unix socket */
    REPBROKER_TRANSPORT_SHARED_MEMORY = 2  /* rings, or repbroker_open fails with REPBROKER_EREFUSED */
} repbroker_transport;

typedef struct repbroker_options {
    const char *socket_path;      /* NULL: $XDG_RUNTIME_DIR/repbroker/broker.sock, else /tmp/repbroker-UID/broker.sock */
    const char *group;            /* NULL: "default"; 1 to 64 bytes of UTF-8 */
    const char *name;             /* NULL: ""; at most 64 bytes of UTF-8, shown in `repbroker stats` */
    unsigned roles;               /* REPBROKER_ROLE_* bits; default REPBROKER_ROLE_SENDER */
    repbroker_ack_policy ack_policy; /* for PERMANENT sends; default REPBROKER_ACK_NONE */
    unsigned ack_timeout_ms;      /* 1 ... 600000; default 1000 */
    unsigned send_timeout_ms;     /* how long a send may wait for its result; default 5000 */
    size_t inbox_limit_bytes;     /* received messages held for repbroker_next_event; default 64 MiB */
    int reconnect;                /* 1 (default): after a failure, dial the broker again (backoff 100 ms to 2 s)
                                     and register anew; calls in between return REPBROKER_EUNAVAILABLE */
    repbroker_transport transport; /* default REPBROKER_TRANSPORT_AUTOMATIC */
    uint32_t ring_bytes;          /* each ring's size with shared memory (4 KiB ... 1 GiB); default 1 MiB. Over the
                                     rings a send is a copy into shared memory, with no system call while the broker
                                     is busy; a full ring makes it wait up to the send timeout. Messages for the
                                     receiver come the same way, and control frames by the socket. */
} repbroker_options;

typedef struct repbroker_client repbroker_client;

typedef enum repbroker_event_kind {
    REPBROKER_EVENT_MESSAGE = 1,   /* a message for this site's receiver */
    REPBROKER_EVENT_SITE_UP = 2,   /* `site` is up in this group: the broker's link to it is up and a client holds
                                      the group's receiver role there (what a direct connection would tell) */
    REPBROKER_EVENT_SITE_DOWN = 3  /* `site` is down: its link went down, or its receiver left and no standby
                                      took over (its broker may still be up) */
} repbroker_event_kind;

/* What repbroker_next_event returns. Pointers are valid until the next call of repbroker_next_event or
   repbroker_close on the same client. */
typedef struct repbroker_event {
    repbroker_event_kind kind;
    int32_t site;                 /* MESSAGE: the sending site (the EID for rep_process_message); SITE_*: the site */
    const void *control;          /* MESSAGE: the control DBT's bytes */
    size_t control_length;
    const void *rec;              /* MESSAGE: the rec DBT's bytes */
    size_t rec_length;
    repbroker_lsn lsn;            /* MESSAGE: the LSN the sender passed (zero when none) */
    uint32_t flags;               /* MESSAGE: REPBROKER_REP_* as sent */
} repbroker_event;

/* Fills `options` with the defaults above. */
void repbroker_options_init(repbroker_options *options);

/* Connects to the broker and registers. On success *client is a new client; on failure *client is NULL, the
   error says what failed (REPBROKER_EINVAL: an option; REPBROKER_EUNAVAILABLE: no broker at the path;
   REPBROKER_EREFUSED: it refused) and repbroker_last_error(NULL) says why, for the calling thread. */
int repbroker_open(const repbroker_options *options, repbroker_client **client);

/* Closes the connection (a thread blocked in repbroker_next_event or a send returns REPBROKER_ECLOSED), then
   frees the client once no call is inside it. No call may start on the client after this one. Safe with NULL. */
void repbroker_close(repbroker_client *client);

/* Sends one message to site `eid` (> 0), REPBROKER_EID_BROADCAST or REPBROKER_EID_MASTER. `lsn` may be NULL.
   Returns once the broker has the message. With REPBROKER_REP_PERMANENT it waits for the broker's answer:
   queued for every destination and, when the message has an LSN (not NULL, not 0/0) and the ack policy is
   not none, acknowledged by as many sites as the policy asks within the ack timeout. A PERMANENT send without
   an LSN does not wait for acks (Berkeley DB gives every PERMANENT record an LSN). Otherwise:
   REPBROKER_EQUEUEFULL (queued nowhere), REPBROKER_EUNROUTABLE, or REPBROKER_ENOTACKED (sent; the reason names
   the sites that acknowledged the LSN in time and those that did not).
   A send waits at most send_timeout_ms for room (a full ring, a full socket: the broker has paused this client
   because its group is congested, or it is stuck), then fails with REPBROKER_ETIMEDOUT and nothing sent. Over
   the socket, a message too large for the socket's buffer may be partly written when the time runs out: the
   connection is then dropped (the broker discards the half message), the reason says so, and the library
   reconnects. Messages for a site's receiver wait at that broker, up to its --inbound-queue-bytes, while no
   receiver is registered, and go to the next one first (Berkeley DB logs BDB3514 for those that arrive before
   its rep_start). */
int repbroker_send(repbroker_client *client, int32_t eid, const void *control, size_t control_length,
                   const void *rec, size_t rec_length, const repbroker_lsn *lsn, uint32_t flags);

/* Waits up to `timeout_ms` (-1: for ever, 0: no wait) for the next event for this client. While the client
   reconnects it waits on (REPBROKER_EUNAVAILABLE only with `reconnect` 0). */
int repbroker_next_event(repbroker_client *client, int timeout_ms, repbroker_event *event);

/* As this site's receiver: `site`'s log is durable here up to `lsn` (DB_REP_ISPERM's ret_lsnp, for a message
   whose source, the envid given to rep_process_message, is `site`). Only `site` is told: its PERMANENT sends
   count this site for every LSN up to it. An ack never reaches a site whose log it is not about. */
int repbroker_acknowledge(repbroker_client *client, repbroker_lsn lsn, int32_t site);

/* Tells the broker (and through it every site) that `site` is the group's master now (DB_EVENT_REP_MASTER,
   DB_EVENT_REP_NEWMASTER): REPBROKER_EID_MASTER sends go there. */
int repbroker_announce_master(repbroker_client *client, int32_t site);

/* This site's id, the client's id at its broker, and the broker's limit on control + rec. */
int32_t repbroker_site_id(const repbroker_client *client);
uint32_t repbroker_client_id(const repbroker_client *client);
uint64_t repbroker_max_message(const repbroker_client *client);
/* 1 when this client holds its group's receiver role now, 0 when it stands by or only sends. */
int repbroker_is_receiver(repbroker_client *client);

/* The client's counters. */
typedef struct repbroker_stats {
    uint64_t messages_sent, bytes_sent, messages_received, bytes_received;
    uint64_t permanent_acked, permanent_failed;
} repbroker_stats;
int repbroker_get_stats(repbroker_client *client, repbroker_stats *stats);

/* ---- Application channels: never mixed with replication traffic; a destination is one site. ---- */

/* A channel message or request for this client, from repbroker_next_channel_message. Pointers are valid until
   the next call of repbroker_next_channel_message or repbroker_close. */
typedef struct repbroker_channel_message {
    const char *channel;          /* NUL-terminated */
    int32_t site;                 /* the sending site */
    int is_request;               /* 1: answer with repbroker_reply */
    uint64_t request_id;          /* for repbroker_reply */
    uint32_t requester;           /* for repbroker_reply */
    const void *payload;
    size_t payload_length;
} repbroker_channel_message;

/* Takes a share (round-robin among subscribers) of `channel`'s messages at this site, in the client's group. */
int repbroker_subscribe(repbroker_client *client, const char *channel);

/* Sends `payload` on `channel` to one subscriber at `site` (> 0, or REPBROKER_EID_MASTER); returns once it was
   handed to a subscriber, or REPBROKER_ENOSUBSCRIBER, REPBROKER_ENOMASTER, REPBROKER_EUNROUTABLE,
   REPBROKER_EQUEUEFULL, REPBROKER_ETIMEDOUT after `timeout_ms`. */
int repbroker_channel_send(repbroker_client *client, const char *channel, int32_t site, const void *payload,
                           size_t payload_length, int timeout_ms);

/* Sends a request on `channel` and waits up to `timeout_ms` for the subscriber's reply: *reply (free it with
   repbroker_free) and *reply_length. Errors as repbroker_channel_send. */
int repbroker_request(repbroker_client *client, const char *channel, int32_t site, const void *payload,
                      size_t payload_length, int timeout_ms, void **reply, size_t *reply_length);

/* Waits up to `timeout_ms` (-1: for ever) for the next message or request on a subscribed channel. */
int repbroker_next_channel_message(repbroker_client *client, int timeout_ms, repbroker_channel_message *message);

/* Answers a request taken with repbroker_next_channel_message. */
int repbroker_reply(repbroker_client *client, const repbroker_channel_message *request, const void *payload,
                    size_t payload_length);

/* Frees what the library allocated for the caller (a request's reply). */
void repbroker_free(void *pointer);

/* The name of an error code, e.g. "REPBROKER_ETIMEDOUT: timed out". */
const char *repbroker_strerror(int error);
/* The reason of the client's last failure (an invalid argument, a broker's ERROR text, the sites that did not
   acknowledge, a system call), or "" when none. The text is valid until the client's next failing call. With
   NULL: why the calling thread's last repbroker_open failed. */
const char *repbroker_last_error(repbroker_client *client);

#ifdef __cplusplus
}
#endif

#endif
