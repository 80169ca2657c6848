/*
 * client_check: drives librepbroker from the command line for the integration tests (CClientTests.swift).
 * CLIENT_CHECK_TRANSPORT=socket|shm picks the transport (default automatic: 64 KiB rings when offered).
 *   client_check send SOCKET GROUP EID TEXT [permanent ACK_POLICY ACK_TIMEOUT_MS] [lsn FILE OFFSET]
 *       one message (control "c", rec TEXT); prints "result NAME" and exits 0 when it was sent.
 *   client_check send-many SOCKET GROUP EID COUNT   COUNT messages "m-0" ... in order; prints "sent COUNT"
 *   client_check receive SOCKET GROUP COUNT TIMEOUT_MS [ack|noreconnect]
 *       as receiver: prints "ready", then each event: "message SITE LSN_FILE LSN_OFFSET FLAGS CONTROL REC" or
 *       "site-up SITE" / "site-down SITE", until COUNT messages or a wait of TIMEOUT_MS; with ack, acknowledges
 *       every message's LSN. Prints "done N" (messages).
 *   client_check send-big SOCKET GROUP EID SIZE    one message of SIZE bytes (byte i is i * 7 % 251); "result NAME"
 *       (receive prints a message over 100 bytes as "message-big SITE LENGTH SUM", SUM the bytes' sum)
 *   client_check open SOCKET GROUP [NAME]          prints "result NAME" of repbroker_open
 *   client_check sizes -                          "sizes OPTIONS EVENT CHANNEL_MESSAGE STATS": the structs' sizes,
 *                                                 for other languages' bindings
 *   client_check too-large SOCKET                  a message one byte over the broker's limit: "result NAME"
 *   client_check serve SOCKET GROUP CHANNEL COUNT [silent]
 *       subscribes ("subscribed"), then for COUNT messages: "channel-message SITE CHANNEL PAYLOAD", or for a
 *       request "request SITE CHANNEL PAYLOAD" and a reply "re:PAYLOAD" (none when silent)
 *   client_check channel-send SOCKET GROUP CHANNEL SITE TEXT TIMEOUT_MS     "result NAME"
 *   client_check request SOCKET GROUP CHANNEL SITE TEXT TIMEOUT_MS          "result NAME", then "reply TEXT"
 *   client_check invalid SOCKET GROUP             each call given an invalid argument: "CALL NAME REASON"; then a
 *       valid send to site 2 ("valid NAME") and the client's id ("client-id N")
 *   client_check control-while-blocked SOCKET GROUP EID SIZE
 *       a thread sends SIZE-byte messages (send timeout 2 s) until a send fails ("send-returned NAME"); once it
 *       has sent a ring's worth, the main thread announces site 1 as master ("announced NAME")
 *   client_check send-until-timeout SOCKET GROUP EID SIZE
 *       over the socket with a 300 ms send timeout, SIZE-byte messages until one fails: "result NAME after N",
 *       "reason TEXT", "client-id N"; then every 50 ms again until one is sent: "then OK client-id N"
 * `send` prints "reason TEXT" after a failed result.
 */
#define _DEFAULT_SOURCE
#include "repbroker_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *name(int error) {
    static const char *names[] = {"OK", "EINVAL", "EUNAVAILABLE", "ECLOSED", "ETIMEDOUT", "ETOOLARGE", "EQUEUEFULL",
                                  "EUNROUTABLE", "ENOTACKED", "EREFUSED", "EPROTOCOL", "ENOMEM", "ESYSTEM",
                                  "ENOSUBSCRIBER", "ENOMASTER"};
    return error >= 0 && error <= REPBROKER_ENOMASTER ? names[error] : "UNKNOWN";
}

/* The defaults, with `socket`, `group` and the name client_check. */
static repbroker_options check_options(const char *socket, const char *group) {
    repbroker_options options;
    repbroker_options_init(&options);
    options.socket_path = socket;
    options.group = group;
    options.name = "client_check";
    return options;
}

static repbroker_client *open_or_exit(const char *socket, const char *group, unsigned roles, repbroker_ack_policy policy,
                                      unsigned ack_timeout_ms, int reconnect) {
    repbroker_options options = check_options(socket, group);
    options.roles = roles;
    options.ack_policy = policy;
    options.ack_timeout_ms = ack_timeout_ms;
    options.reconnect = reconnect;
    /* CLIENT_CHECK_TRANSPORT=socket|shm picks the transport (default: automatic, rings when offered). */
    const char *transport = getenv("CLIENT_CHECK_TRANSPORT");
    if (transport && !strcmp(transport, "socket")) options.transport = REPBROKER_TRANSPORT_SOCKET;
    if (transport && !strcmp(transport, "shm")) options.transport = REPBROKER_TRANSPORT_SHARED_MEMORY;
    options.ring_bytes = 64u << 10;
    repbroker_client *client = NULL;
    int status = repbroker_open(&options, &client);
    if (status) {
        printf("result %s\n", name(status));
        fprintf(stderr, "open: %s\n", repbroker_strerror(status));
        exit(2);
    }
    return client;
}

/* Every call with an invalid argument says why, and the client goes on working. */
static int invalid_calls(const char *socket, const char *group) {
    repbroker_options options;
    repbroker_options_init(&options);
    options.socket_path = socket;
    options.group = "\xff";
    repbroker_client *client = NULL;
    int status = repbroker_open(&options, &client);
    printf("open-group-not-utf8 %s %s\n", name(status), repbroker_last_error(NULL));
    client = open_or_exit(socket, group, REPBROKER_ROLE_SENDER, REPBROKER_ACK_NONE, 1000, 1);
    repbroker_lsn lsn = {1, 2};
    status = repbroker_send(client, 0, "c", 1, "r", 1, NULL, 0);
    printf("send-eid-0 %s %s\n", name(status), repbroker_last_error(client));
    status = repbroker_send(client, 2, "c", 1, "r", 1, NULL, 0x100);
    printf("send-flags-0x100 %s %s\n", name(status), repbroker_last_error(client));
    status = repbroker_send(client, 2, NULL, 5, "r", 1, NULL, 0);
    printf("send-null-control %s %s\n", name(status), repbroker_last_error(client));
    status = repbroker_acknowledge(client, lsn, 0);
    printf("acknowledge-site-0 %s %s\n", name(status), repbroker_last_error(client));
    status = repbroker_announce_master(client, -5);
    printf("announce-master--5 %s %s\n", name(status), repbroker_last_error(client));
    status = repbroker_subscribe(client, "\xff");
    printf("subscribe-not-utf8 %s %s\n", name(status), repbroker_last_error(client));
    status = repbroker_subscribe(client, "\xc0\xaf");
    printf("subscribe-overlong %s %s\n", name(status), repbroker_last_error(client));
    status = repbroker_channel_send(client, "", 2, "p", 1, 1000);
    printf("channel-send-empty %s %s\n", name(status), repbroker_last_error(client));
    status = repbroker_channel_send(client, "c", -1, "p", 1, 1000);
    printf("channel-send-broadcast %s %s\n", name(status), repbroker_last_error(client));
    status = repbroker_send(client, 2, "c", 1, "valid", 5, NULL, 0);
    printf("valid %s\n", name(status));
    printf("client-id %u\n", repbroker_client_id(client));
    repbroker_close(client);
    return 0;
}

struct blocked_sender {
    repbroker_client *client;
    int eid;
    size_t size;
    atomic_int sent;
};

static void *send_until_failure(void *argument) {
    struct blocked_sender *sender = argument;
    char *payload = calloc(1, sender->size);
    int status;
    while ((status = repbroker_send(sender->client, sender->eid, NULL, 0, payload, sender->size, NULL, 0)) == 0)
        atomic_fetch_add(&sender->sent, 1);
    printf("send-returned %s\n", name(status));
    free(payload);
    return NULL;
}

/* A control call while another thread's send waits for ring room: it goes at once. */
static int control_while_blocked(const char *socket, const char *group, int eid, size_t size) {
    repbroker_options options = check_options(socket, group);
    options.transport = REPBROKER_TRANSPORT_SHARED_MEMORY;
    options.ring_bytes = 64u << 10;
    options.send_timeout_ms = 2000;
    struct blocked_sender sender = {.eid = eid, .size = size};
    int status = repbroker_open(&options, &sender.client);
    if (status) { printf("result %s\n", name(status)); return 2; }
    pthread_t thread;
    pthread_create(&thread, NULL, send_until_failure, &sender);
    /* A ring's worth sent (records of 8 + 48 + size bytes, rounded up to 8): the next send waits for room the
       paused broker does not make. */
    size_t per_ring = options.ring_bytes / ((8 + 48 + size + 7) & ~(size_t)7);
    while ((size_t)atomic_load(&sender.sent) < per_ring) usleep(1000);
    printf("announced %s\n", name(repbroker_announce_master(sender.client, 1)));
    pthread_join(thread, NULL);
    repbroker_close(sender.client);
    return 0;
}

/* Socket sends until the send timeout passes, then again until one goes. */
static int send_until_timeout(const char *socket, const char *group, int eid, size_t size) {
    repbroker_options options = check_options(socket, group);
    options.transport = REPBROKER_TRANSPORT_SOCKET;
    options.send_timeout_ms = 300;
    repbroker_client *client = NULL;
    int status = repbroker_open(&options, &client);
    if (status) { printf("result %s\n", name(status)); return 2; }
    char *payload = calloc(1, size);
    int sent = 0;
    while ((status = repbroker_send(client, eid, NULL, 0, payload, size, NULL, 0)) == 0) sent++;
    printf("result %s after %d\n", name(status), sent);
    printf("reason %s\n", repbroker_last_error(client));
    printf("client-id %u\n", repbroker_client_id(client));
    for (int tries = 0; tries < 600; tries++) {
        usleep(50000);
        if (repbroker_send(client, eid, NULL, 0, "x", 1, NULL, 0) == 0) {
            printf("then OK client-id %u\n", repbroker_client_id(client));
            break;
        }
    }
    free(payload);
    repbroker_close(client);
    return 0;
}

static int policy_of(const char *text) {
    if (!strcmp(text, "one")) return REPBROKER_ACK_ONE;
    if (!strcmp(text, "quorum")) return REPBROKER_ACK_QUORUM;
    if (!strcmp(text, "all")) return REPBROKER_ACK_ALL;
    return REPBROKER_ACK_NONE;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3) return 64;
    const char *command = argv[1], *socket = argv[2];
    if (!strcmp(command, "send") && argc >= 6) {
        int permanent = argc >= 9 && !strcmp(argv[6], "permanent");
        repbroker_client *client = open_or_exit(socket, argv[3], REPBROKER_ROLE_SENDER,
                                                permanent ? policy_of(argv[7]) : REPBROKER_ACK_NONE,
                                                permanent ? (unsigned)atoi(argv[8]) : 1000, 1);
        repbroker_lsn lsn = {0, 0};
        for (int i = 6; i + 2 < argc; i++) {
            if (!strcmp(argv[i], "lsn")) lsn = (repbroker_lsn){(uint32_t)atoi(argv[i + 1]), (uint32_t)atoi(argv[i + 2])};
        }
        int status = repbroker_send(client, atoi(argv[4]), "c", 1, argv[5], strlen(argv[5]), &lsn,
                                    permanent ? REPBROKER_REP_PERMANENT : 0);
        printf("result %s\n", name(status));
        if (status) printf("reason %s\n", repbroker_last_error(client));
        repbroker_close(client);
        return status ? 1 : 0;
    }
    if (!strcmp(command, "send-many") && argc == 6) {
        repbroker_client *client = open_or_exit(socket, argv[3], REPBROKER_ROLE_SENDER, REPBROKER_ACK_NONE, 1000, 1);
        int count = atoi(argv[5]);
        for (int i = 0; i < count; i++) {
            char text[32];
            int length = snprintf(text, sizeof text, "m-%d", i);
            int status = repbroker_send(client, atoi(argv[4]), NULL, 0, text, (size_t)length, NULL, 0);
            if (status) { printf("result %s\n", name(status)); return 1; }
        }
        printf("sent %d\n", count);
        repbroker_close(client);
        return 0;
    }
    if (!strcmp(command, "receive") && argc >= 6) {
        int ack = argc >= 7 && !strcmp(argv[6], "ack");
        int reconnect = !(argc >= 7 && !strcmp(argv[6], "noreconnect"));
        repbroker_client *client = open_or_exit(socket, argv[3], REPBROKER_ROLE_SENDER | REPBROKER_ROLE_RECEIVER,
                                                REPBROKER_ACK_NONE, 1000, reconnect);
        printf("ready %d\n", repbroker_site_id(client));
        int wanted = atoi(argv[4]), timeout = atoi(argv[5]), messages = 0;
        repbroker_event event;
        while (messages < wanted) {
            int status = repbroker_next_event(client, timeout, &event);
            if (status) {
                printf("stopped %s\n", name(status));
                break;
            }
            if (event.kind == REPBROKER_EVENT_MESSAGE && event.rec_length > 100) {
                messages++;
                unsigned long long sum = 0;
                int pattern = 1;
                for (size_t i = 0; i < event.rec_length; i++) {
                    unsigned char byte = ((const unsigned char *)event.rec)[i];
                    sum += byte;
                    pattern &= byte == (unsigned char)(i * 7 % 251);
                }
                printf("message-big %d %zu %llu %s\n", event.site, event.rec_length, sum, pattern ? "pattern" : "garbled");
            } else if (event.kind == REPBROKER_EVENT_MESSAGE) {
                messages++;
                printf("message %d %u %u %u %.*s %.*s\n", event.site, event.lsn.file, event.lsn.offset, event.flags,
                       (int)event.control_length, (const char *)event.control, (int)event.rec_length,
                       (const char *)event.rec);
                if (ack && (status = repbroker_acknowledge(client, event.lsn, event.site))) printf("ack %s\n", name(status));
            } else {
                printf("%s %d\n", event.kind == REPBROKER_EVENT_SITE_UP ? "site-up" : "site-down", event.site);
            }
        }
        repbroker_stats stats;
        repbroker_get_stats(client, &stats);
        printf("done %d received %llu\n", messages, (unsigned long long)stats.messages_received);
        repbroker_close(client);
        return 0;
    }
    if (!strcmp(command, "send-big") && argc == 6) {
        repbroker_client *client = open_or_exit(socket, argv[3], REPBROKER_ROLE_SENDER, REPBROKER_ACK_NONE, 1000, 1);
        size_t size = (size_t)atol(argv[5]);
        unsigned char *big = malloc(size);
        for (size_t i = 0; i < size; i++) big[i] = (unsigned char)(i * 7 % 251);
        printf("result %s\n", name(repbroker_send(client, atoi(argv[4]), NULL, 0, big, size, NULL, 0)));
        free(big);
        repbroker_close(client);
        return 0;
    }
    if (!strcmp(command, "sizes")) {
        printf("sizes %zu %zu %zu %zu\n", sizeof(repbroker_options), sizeof(repbroker_event),
               sizeof(repbroker_channel_message), sizeof(repbroker_stats));
        return 0;
    }
    if (!strcmp(command, "open") && argc >= 4) {
        repbroker_options options;
        repbroker_options_init(&options);
        options.socket_path = socket;
        options.group = argv[3];
        options.name = argc >= 5 ? argv[4] : NULL;
        repbroker_client *client = NULL;
        int status = repbroker_open(&options, &client);
        printf("result %s\n", name(status));
        repbroker_close(client);
        return 0;
    }
    if (!strcmp(command, "too-large")) {
        repbroker_client *client = open_or_exit(socket, "default", REPBROKER_ROLE_SENDER, REPBROKER_ACK_NONE, 1000, 1);
        size_t size = (size_t)repbroker_max_message(client) + 1;
        char *big = calloc(1, size);
        printf("result %s\n", name(repbroker_send(client, 2, NULL, 0, big, size, NULL, 0)));
        free(big);
        repbroker_close(client);
        return 0;
    }
    if (!strcmp(command, "serve") && argc >= 6) {
        int silent = argc >= 7 && !strcmp(argv[6], "silent");
        repbroker_client *client = open_or_exit(socket, argv[3], REPBROKER_ROLE_SENDER, REPBROKER_ACK_NONE, 1000, 1);
        int status = repbroker_subscribe(client, argv[4]);
        printf(status ? "result %s\n" : "subscribed\n", name(status));
        for (int i = 0, count = atoi(argv[5]); i < count && !status; i++) {
            repbroker_channel_message message;
            if ((status = repbroker_next_channel_message(client, 30000, &message))) break;
            printf("%s %d %s %.*s\n", message.is_request ? "request" : "channel-message", message.site, message.channel,
                   (int)message.payload_length, (const char *)message.payload);
            if (message.is_request && !silent) {
                char answer[256];
                int length = snprintf(answer, sizeof answer, "re:%.*s", (int)message.payload_length, (const char *)message.payload);
                status = repbroker_reply(client, &message, answer, (size_t)length);
            }
        }
        printf("served %s\n", name(status));
        repbroker_close(client);
        return 0;
    }
    if ((!strcmp(command, "channel-send") || !strcmp(command, "request")) && argc >= 8) {
        repbroker_client *client = open_or_exit(socket, argv[3], REPBROKER_ROLE_SENDER, REPBROKER_ACK_NONE, 1000, 1);
        int site = atoi(argv[5]), timeout = atoi(argv[7]);
        if (!strcmp(command, "channel-send")) {
            printf("result %s\n", name(repbroker_channel_send(client, argv[4], site, argv[6], strlen(argv[6]), timeout)));
        } else {
            void *reply = NULL;
            size_t length = 0;
            int status = repbroker_request(client, argv[4], site, argv[6], strlen(argv[6]), timeout, &reply, &length);
            printf("result %s\n", name(status));
            if (!status) printf("reply %.*s\n", (int)length, (const char *)reply);
            repbroker_free(reply);
        }
        repbroker_close(client);
        return 0;
    }
    if (!strcmp(command, "invalid") && argc == 4) return invalid_calls(socket, argv[3]);
    if (!strcmp(command, "control-while-blocked") && argc == 6)
        return control_while_blocked(socket, argv[3], atoi(argv[4]), (size_t)atol(argv[5]));
    if (!strcmp(command, "send-until-timeout") && argc == 6)
        return send_until_timeout(socket, argv[3], atoi(argv[4]), (size_t)atol(argv[5]));
    fprintf(stderr, "client_check: unknown command or arguments\n");
    return 64;
}
