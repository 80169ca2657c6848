/*
 * Berkeley DB's Base API replication over repbroker, in C: the transport callback that rep_set_transport
 * takes, and the one thread per site that feeds rep_process_message. Any process of the site may send (every
 * writer of the master's log); one process per site holds the receiver role.
 *
 *   cc rep_transport.c $(pkg-config --cflags --libs repbroker) -ldb-5.3
 *
 * A sketch of the transport's calls, not a whole program. The site agent (ipc/bdb/repbroker_bdb.h,
 * librepbroker-bdb) does all of this and the rest: elections, acks, heartbeats, failchk, re-initialization.
 */
#define _DEFAULT_SOURCE /* db.h uses u_int and u_long */
#include <db.h>
#include <string.h>

#include "repbroker_client.h"

static repbroker_client *broker;  /* one per process, opened before the environment */

/* DB_ENV->rep_set_transport's callback: Berkeley DB hands each message here, from any thread. */
static int send_fn(DB_ENV *env, const DBT *control, const DBT *rec, const DB_LSN *lsn, int eid, u_int32_t flags) {
    (void)env;
    repbroker_lsn at = {lsn ? lsn->file : 0, lsn ? lsn->offset : 0};
    int status = repbroker_send(broker, eid, control ? control->data : NULL, control ? control->size : 0,
                                rec ? rec->data : NULL, rec ? rec->size : 0, lsn ? &at : NULL, flags);
    /* Non-zero tells Berkeley DB the message was not sent; for DB_REP_PERMANENT, that the ack policy failed. */
    return status == REPBROKER_OK ? 0 : DB_REP_UNAVAIL;
}

/* The site's one receiving thread: every message to rep_process_message, and durable LSNs acknowledged. */
static void receive_loop(DB_ENV *env) {
    repbroker_event event;
    for (;;) {
        int status = repbroker_next_event(broker, -1, &event);
        if (status != REPBROKER_OK) return;
        if (event.kind != REPBROKER_EVENT_MESSAGE) continue;  /* site up / down: the application's to use */
        DBT control, rec;
        memset(&control, 0, sizeof control);
        memset(&rec, 0, sizeof rec);
        control.data = (void *)event.control;
        control.size = (u_int32_t)event.control_length;
        rec.data = (void *)event.rec;
        rec.size = (u_int32_t)event.rec_length;
        DB_LSN permanent;
        if (env->rep_process_message(env, &control, &rec, event.site, &permanent) == DB_REP_ISPERM) {
            repbroker_acknowledge(broker, (repbroker_lsn){permanent.file, permanent.offset}, event.site);
        }
    }
}

int open_transport(DB_ENV *env, const char *socket_path, int site_id, int receiver) {
    repbroker_options options;
    repbroker_options_init(&options);
    options.socket_path = socket_path;
    options.roles = REPBROKER_ROLE_SENDER | (receiver ? REPBROKER_ROLE_RECEIVER : 0);
    options.ack_policy = REPBROKER_ACK_QUORUM;
    if (repbroker_open(&options, &broker) != REPBROKER_OK) return -1;
    return env->rep_set_transport(env, site_id, send_fn);
}

/* Referenced so that the sketch links as a whole. */
void (*const run_receiver)(DB_ENV *) = receive_loop;
