/*
 * repbroker IPC contract: frame layouts shared by the local socket and peer links.
 *
 * Every integer is little-endian. Every frame starts with rb_frame_header; `length` counts the body bytes
 * that follow the 8-byte header. A reader checks magic, reserved, type and length against the limits below
 * before it uses any other field. ipc/PROTOCOL.md is the prose counterpart of this file.
 */
#ifndef REPBROKER_FRAMES_H
#define REPBROKER_FRAMES_H

#include <stdint.h>

#define RB_PROTOCOL_VERSION 6u
/* The oldest version this build speaks (the one before RB_PROTOCOL_VERSION): ipc/PROTOCOL.md, "Versioning". */
#define RB_PROTOCOL_VERSION_OLDEST 5u
#define RB_FRAME_MAGIC 0xB7u
#define RB_PEER_HELLO_MAGIC 0x4C504252u /* "RBPL" read as little-endian */

/* Limits a reader enforces before it sizes anything. */
#define RB_MAX_CONTROL_BODY 65536u            /* every frame but MESSAGE and CHANNEL; those: see PROTOCOL.md */
#define RB_DEFAULT_MAX_MESSAGE (64u << 20)    /* control + rec, configurable per broker */
#define RB_MAX_GROUP_NAME 64u
#define RB_MAX_CLIENT_NAME 64u
#define RB_MAX_MEMBERS 1024u                 /* sites in MEMBERS, and in each list of a SEND_RESULT */
#define RB_DEFAULT_FLOW_WINDOW (512u << 10)  /* per flow, announced in HELLO; see PROTOCOL.md "Flow control" */
#define RB_MIN_FLOW_WINDOW (64u << 10)

/* Frame types. */
#define RB_FRAME_REGISTER 0x01u    /* client -> broker */
#define RB_FRAME_WELCOME 0x02u     /* broker -> client */
#define RB_FRAME_ROLE 0x03u        /* broker -> client: receiver role granted */
#define RB_FRAME_SEND_RESULT 0x04u /* broker -> client: outcome of a PERMANENT send */
#define RB_FRAME_ERROR 0x05u       /* either way, on any link, just before the sender closes */
#define RB_FRAME_SITE_EVENT 0x06u  /* broker -> receiver: a peer site's link came up or went down */
#define RB_FRAME_ACK 0x07u         /* receiver -> broker: this site holds a site's record up to an LSN */
#define RB_FRAME_ACK_POLICY 0x08u  /* client -> broker: how many sites a PERMANENT send waits for */
#define RB_FRAME_MASTER 0x09u      /* client -> broker: the group's master site */
#define RB_FRAME_SUBSCRIBE 0x0Au   /* client -> broker: deliver this channel's messages to me */
#define RB_FRAME_CHANNEL 0x11u     /* an application message on a named channel, on every link */
#define RB_FRAME_CHANNEL_RESULT 0x12u /* broker -> client and peer: outcome of a channel send or request */
#define RB_FRAME_MESSAGE 0x10u     /* a replication message, on every link */
#define RB_FRAME_HELLO 0x20u       /* peer handshake, both ways */
#define RB_FRAME_ACTIVATE 0x21u    /* peer: the lower site id makes this connection the link */
#define RB_FRAME_HEARTBEAT 0x22u   /* peer: sent when nothing else was sent for one interval */
#define RB_FRAME_GROUP_BIND 0x23u  /* peer: names a group index used by later MESSAGE frames */
#define RB_FRAME_PEER_ACK 0x24u    /* peer: the sending site is durable up to an LSN in a group */
#define RB_FRAME_PEER_MASTER 0x25u /* peer: the master of a group, as announced at the sending site */
#define RB_FRAME_MEMBERS 0x26u     /* peer: sites the sender knows, with their addresses */
#define RB_FRAME_REMOVE_SITE 0x27u /* peer: a site left the group for good */
#define RB_FRAME_AUTH 0x28u        /* peer: proof of the group key over both HELLO nonces */
#define RB_FRAME_CREDIT 0x29u      /* peer: the receiver handed on more bytes of one flow; send that many more */
#define RB_FRAME_PEER_RECEIVER 0x2Au /* peer: whether a client holds a group's receiver role at the sending site */

/* Traffic classes of the flows a peer link schedules (CREDIT). */
#define RB_CLASS_REPLICATION 0u    /* MESSAGE frames */
#define RB_CLASS_CHANNEL 1u        /* CHANNEL frames */

/* HELLO flags. */
#define RB_HELLO_JOINING 0x1u      /* the sender is joining: accept its unknown site id */
#define RB_HELLO_KEYED 0x2u        /* the sender has a group key: both sides must prove it with AUTH */

/* Berkeley DB values carried as they are (db.h). */
#define RB_EID_BROADCAST (-1)
#define RB_EID_INVALID (-2)
#define RB_EID_MASTER (-3) /* the site last announced as the group's master */
#define RB_REP_ANYWHERE 0x1u
#define RB_REP_NOBUFFER 0x2u
#define RB_REP_PERMANENT 0x4u
#define RB_REP_REREQUEST 0x8u

/* REGISTER roles (bits) and role states. */
#define RB_ROLE_SENDER 0x1u
#define RB_ROLE_RECEIVER 0x2u
#define RB_ROLE_STATE_NONE 0u
#define RB_ROLE_STATE_RECEIVER 1u
#define RB_ROLE_STATE_STANDBY 2u

/* SEND_RESULT status. */
#define RB_SEND_OK 0u
#define RB_SEND_QUEUE_FULL 1u  /* queued nowhere: a destination's queue was full (refused, or dropped and counted) */
#define RB_SEND_UNROUTABLE 2u
#define RB_SEND_ACK_TIMEOUT 3u /* queued, but the ack policy was not met within its timeout */
#define RB_SEND_PARTLY_QUEUED 4u /* a broadcast queued for some sites, dropped (counted) at others with full queues */

/* CHANNEL kinds and CHANNEL_RESULT status. */
#define RB_CHANNEL_MESSAGE 0u
#define RB_CHANNEL_REQUEST 1u
#define RB_CHANNEL_REPLY 2u
#define RB_CHANNEL_DELIVERED 0u
#define RB_CHANNEL_NO_SUBSCRIBER 1u
#define RB_CHANNEL_NO_MASTER 2u
#define RB_CHANNEL_UNROUTABLE 3u
#define RB_CHANNEL_QUEUE_FULL 4u
#define RB_CHANNEL_TIMED_OUT 5u /* client -> broker: a request of this client got no reply in time (counted) */

/* ACK_POLICY policies. */
#define RB_ACK_NONE 0u
#define RB_ACK_ONE 1u
#define RB_ACK_QUORUM 2u /* a majority of the group's sites, the sender's own counted */
#define RB_ACK_ALL 3u

/* ERROR codes. */
#define RB_ERR_VERSION 1u
#define RB_ERR_BAD_FRAME 2u
#define RB_ERR_TOO_LARGE 3u
#define RB_ERR_DUPLICATE_LINK 4u
#define RB_ERR_UNKNOWN_SITE 5u
#define RB_ERR_SITE_CONFLICT 6u
#define RB_ERR_NOT_REGISTERED 7u /* local client: a frame other than REGISTER came first */
#define RB_ERR_SHUTDOWN 8u
#define RB_ERR_AUTH 9u
#define RB_ERR_NOT_ALLOWED 10u /* local client: its uid/gid is not in the broker's allow list */
#define RB_ERR_CLIENT_LIMIT 11u /* local client: the broker serves --max-clients clients already */
#define RB_ERR_GROUP_LIMIT 12u  /* REGISTER: a new group, and the broker serves --max-groups groups already */
#define RB_ERR_TLS 13u          /* peer link: TLS on one end only, or a certificate that names no site, another site, or no pin */

typedef struct rb_frame_header {
    uint32_t length;   /* body bytes after this header */
    uint8_t type;      /* RB_FRAME_* */
    uint8_t magic;     /* RB_FRAME_MAGIC */
    uint16_t reserved; /* 0 */
} rb_frame_header;

/* REGISTER at version 6 and later; a version 5 REGISTER is the same without min_version and reserved (16 bytes
   before its strings). A broker reads `version` first: PROTOCOL.md, "Versioning". */
typedef struct rb_register {
    uint16_t version;       /* the newest version the client speaks */
    uint16_t roles;    /* RB_ROLE_* bits */
    int32_t pid;
    uint16_t group_length;  /* 1 ... RB_MAX_GROUP_NAME */
    uint16_t name_length;   /* 0 ... RB_MAX_CLIENT_NAME */
    uint32_t ring_bytes;    /* shared-memory rings wanted: each ring's size; 0 for the socket only */
    uint16_t min_version;   /* the oldest version the client speaks (version 6 and later) */
    uint16_t reserved;
    /* group bytes, then name bytes (UTF-8) */
} rb_register;

typedef struct rb_welcome {
    uint16_t version;
    uint16_t role_state;    /* RB_ROLE_STATE_* */
    int32_t site_id;
    uint32_t client_id;
    uint32_t ring_bytes;    /* rings granted (segment and doorbells attached with SCM_RIGHTS); 0: socket only */
    uint64_t max_message;   /* the broker's limit on control + rec */
} rb_welcome;

typedef struct rb_role {
    uint16_t role_state;
    uint16_t reserved;
} rb_role;

typedef struct rb_send_result {
    uint64_t sequence;      /* the MESSAGE's sequence */
    uint32_t status;        /* RB_SEND_* */
    uint16_t acked_count;   /* RB_SEND_ACK_TIMEOUT: int32 site ids that acknowledged the LSN in time follow ... */
    uint16_t missing_count; /* ... then those that did not; 0 and 0 with every other status */
} rb_send_result;

typedef struct rb_error {
    uint32_t code;          /* RB_ERR_*; UTF-8 reason follows */
} rb_error;

typedef struct rb_site_event {
    int32_t site_id;
    uint16_t up;            /* 1 up, 0 down */
    uint16_t reserved;
} rb_site_event;

typedef struct rb_ack {
    uint32_t lsn_file;      /* the LSN made durable (DB_REP_ISPERM's ret_lsnp) */
    uint32_t lsn_offset;
    int32_t site_id;        /* the site whose message is acknowledged (its source), > 0 */
    uint32_t reserved;
} rb_ack;

typedef struct rb_ack_policy {
    uint16_t policy;        /* RB_ACK_* */
    uint16_t reserved;
    uint32_t timeout_ms;    /* how long a PERMANENT send waits for its acks */
} rb_ack_policy;

typedef struct rb_master {
    int32_t site_id;        /* 0: no master known */
    uint32_t reserved;
} rb_master;

typedef struct rb_peer_ack {
    uint32_t group;         /* the sender's group index */
    uint32_t lsn_file;
    uint32_t lsn_offset;
} rb_peer_ack;

typedef struct rb_peer_master {
    uint32_t group;
    int32_t site_id;
} rb_peer_master;

typedef struct rb_subscribe {
    uint16_t channel_length;  /* 1 ... RB_MAX_GROUP_NAME; the name follows */
    uint16_t reserved;
} rb_subscribe;

typedef struct rb_channel {
    uint32_t group;           /* peer links: the sender's group index; local links: 0 */
    int32_t source;           /* to a client: the sending site; from a client: 0; peer links: the flow sequence number */
    int32_t destination;      /* site id or RB_EID_MASTER */
    uint16_t kind;            /* RB_CHANNEL_MESSAGE / REQUEST / REPLY */
    uint16_t channel_length;  /* 1 ... RB_MAX_GROUP_NAME */
    uint64_t request_id;      /* chosen by the requesting client; a reply carries its request's */
    uint32_t requester;       /* the requesting client's id at the source site (set by its broker) */
    uint32_t payload_length;
    /* channel name, then payload */
} rb_channel;

typedef struct rb_channel_result {
    uint64_t request_id;
    uint32_t requester;       /* client id at the site the result goes to */
    uint32_t status;          /* RB_CHANNEL_DELIVERED ... */
} rb_channel_result;

typedef struct rb_message {
    uint32_t group;         /* peer links: the sender's group index (GROUP_BIND); local links: 0 */
    int32_t source;         /* to a receiver: the sending site; from a client: 0; peer links: the flow sequence number */
    int32_t destination;    /* site id or RB_EID_BROADCAST */
    uint32_t flags;         /* RB_REP_* */
    uint32_t lsn_file;
    uint32_t lsn_offset;
    uint32_t control_length;
    uint32_t rec_length;
    uint64_t sequence;      /* client -> broker: nonzero asks for a SEND_RESULT; elsewhere 0 */
    /* control bytes, then rec bytes */
} rb_message;

typedef struct rb_hello {
    uint32_t magic;         /* RB_PEER_HELLO_MAGIC */
    uint16_t version;       /* the oldest version the sender speaks */
    uint16_t max_version;   /* the newest (0 from a broker of version 5: `version` alone) */
    int32_t site_id;
    uint32_t reserved2;
    uint64_t incarnation;   /* random per broker start: tells a restarted peer from a duplicate connect */
    uint16_t address_length; /* 0 ... 255: where the sender listens for peers (HOST:PORT), may be empty */
    uint16_t flags;         /* RB_HELLO_* */
    uint32_t window;        /* bytes each of the other side's flows may send before credit; >= RB_MIN_FLOW_WINDOW */
    uint8_t nonce[16];      /* random per connection, for AUTH */
    /* address bytes */
} rb_hello;

typedef struct rb_auth {
    /* HMAC-SHA256(group key, "repbroker-auth-v1" || int32 prover site id (LE) || prover's nonce ||
       verifier's nonce) */
    uint8_t mac[32];
} rb_auth;

typedef struct rb_members {
    uint16_t count;         /* entries that follow: int32 site_id, uint16 address_length, address bytes */
    uint16_t reserved;
} rb_members;

typedef struct rb_remove_site {
    int32_t site_id;
    uint32_t reserved;
} rb_remove_site;

typedef struct rb_group_bind {
    uint32_t group;
    uint16_t name_length;   /* 1 ... RB_MAX_GROUP_NAME */
    uint16_t reserved;
    /* name bytes */
} rb_group_bind;

typedef struct rb_credit {
    uint32_t group;         /* the flow's group: the index the data frames carried (the credited side's) */
    uint8_t traffic_class;  /* RB_CLASS_* */
    uint8_t reserved[3];    /* 0 */
    uint32_t bytes;         /* > 0: whole frames, headers included */
    uint32_t acked;         /* sequence number of the flow's last frame handled: it and every earlier one are acked */
} rb_credit;

typedef struct rb_peer_receiver {
    uint32_t group;         /* the sender's group index */
    uint16_t present;       /* 1: a client holds the group's receiver role at the sending site; 0: none does */
    uint16_t reserved;
} rb_peer_receiver;

_Static_assert(sizeof(rb_frame_header) == 8, "frame header is 8 bytes");
_Static_assert(sizeof(rb_register) == 20, "register (version 6) is 20 bytes before its strings");
_Static_assert(sizeof(rb_welcome) == 24, "welcome is 24 bytes");
_Static_assert(sizeof(rb_role) == 4, "role is 4 bytes");
_Static_assert(sizeof(rb_send_result) == 16, "send result is 16 bytes");
_Static_assert(sizeof(rb_message) == 40, "message header is 40 bytes");
_Static_assert(sizeof(rb_site_event) == 8, "site event is 8 bytes");
_Static_assert(sizeof(rb_subscribe) == 4, "subscribe is 4 bytes before its name");
_Static_assert(sizeof(rb_channel) == 32, "channel header is 32 bytes");
_Static_assert(sizeof(rb_channel_result) == 16, "channel result is 16 bytes");
_Static_assert(sizeof(rb_ack) == 16, "ack is 16 bytes");
_Static_assert(sizeof(rb_ack_policy) == 8, "ack policy is 8 bytes");
_Static_assert(sizeof(rb_master) == 8, "master is 8 bytes");
_Static_assert(sizeof(rb_peer_ack) == 12, "peer ack is 12 bytes");
_Static_assert(sizeof(rb_peer_master) == 8, "peer master is 8 bytes");
_Static_assert(sizeof(rb_hello) == 48, "hello is 48 bytes before its address");
_Static_assert(sizeof(rb_auth) == 32, "auth is 32 bytes");
_Static_assert(sizeof(rb_members) == 4, "members is 4 bytes before its entries");
_Static_assert(sizeof(rb_remove_site) == 8, "remove site is 8 bytes");
_Static_assert(sizeof(rb_group_bind) == 8, "group bind is 8 bytes before its name");
_Static_assert(sizeof(rb_credit) == 16, "credit is 16 bytes");
_Static_assert(sizeof(rb_peer_receiver) == 8, "peer receiver is 8 bytes");

#endif
