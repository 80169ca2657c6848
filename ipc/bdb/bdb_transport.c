/* The transport every process of a site installs (the agent's and each writer's), the writer's attach, and the
   helpers the rest of the library shares: reasons of failures, the clock, configuration before open. */
#include "bdb_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_error[512];

int bdb_fail(int error, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(last_error, sizeof last_error, format, arguments);
    va_end(arguments);
    return error;
}

const char *repbroker_bdb_last_error(void) { return last_error; }

uint64_t bdb_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/* ---- env -> transport, without a lock on the send path ---- */

#define TRANSPORT_SLOTS 64
static _Atomic(DB_ENV *) slot_env[TRANSPORT_SLOTS];
static _Atomic(bdb_transport *) slot_transport[TRANSPORT_SLOTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

static bdb_transport *transport_of(DB_ENV *env) {
    for (int i = 0; i < TRANSPORT_SLOTS; i++) {
        if (atomic_load_explicit(&slot_env[i], memory_order_acquire) == env) {
            return atomic_load_explicit(&slot_transport[i], memory_order_acquire);
        }
    }
    return NULL;
}

repbroker_site *bdb_site_of(const DB_ENV *env) {
    bdb_transport *transport = transport_of((DB_ENV *)env);
    return transport ? transport->site : NULL;
}

/* DB_ENV->rep_set_transport's callback: Berkeley DB hands each message here, on whatever thread is inside it.
   Non-zero means not sent; for DB_REP_PERMANENT, that the ack policy was not met (Berkeley DB then flushes its
   log locally). */
static int transport_send(DB_ENV *env, const DBT *control, const DBT *rec, const DB_LSN *lsn, int eid,
                          u_int32_t flags) {
    bdb_transport *transport = transport_of(env);
    if (!transport) return DB_REP_UNAVAIL;
    repbroker_lsn at = {lsn ? lsn->file : 0, lsn ? lsn->offset : 0};
    int status = repbroker_send(transport->client, eid, control ? control->data : NULL, control ? control->size : 0,
                                rec ? rec->data : NULL, rec ? rec->size : 0, lsn ? &at : NULL, flags & 0xFu);
    int permanent = (flags & DB_REP_PERMANENT) != 0;
    if (status == REPBROKER_OK) {
        atomic_fetch_add_explicit(&transport->sent, 1, memory_order_relaxed);
        if (permanent) atomic_fetch_add_explicit(&transport->perm_acked, 1, memory_order_relaxed);
        return 0;
    }
    atomic_fetch_add_explicit(&transport->send_failures, 1, memory_order_relaxed);
    if (permanent) {
        atomic_fetch_add_explicit(&transport->perm_failed, 1, memory_order_relaxed);
        if (transport->site) {
            bdb_emit(transport->site, REPBROKER_SITE_PERM_FAILED, 0, status, repbroker_last_error(transport->client));
        }
    }
    return DB_REP_UNAVAIL;
}

int bdb_transport_install(DB_ENV *env, bdb_transport *transport) {
    pthread_mutex_lock(&slots_lock);
    int slot = -1;
    for (int i = 0; i < TRANSPORT_SLOTS && slot < 0; i++) {
        DB_ENV *held = atomic_load(&slot_env[i]);
        if (held == env) {
            pthread_mutex_unlock(&slots_lock);
            return bdb_fail(REPBROKER_BDB_EINVAL, "this environment already has a repbroker transport in this process");
        }
        if (!held) slot = i;
    }
    if (slot < 0) {
        pthread_mutex_unlock(&slots_lock);
        return bdb_fail(REPBROKER_BDB_ESYSTEM, "more than %d environments with a repbroker transport", TRANSPORT_SLOTS);
    }
    atomic_store_explicit(&slot_transport[slot], transport, memory_order_release);
    atomic_store_explicit(&slot_env[slot], env, memory_order_release);
    pthread_mutex_unlock(&slots_lock);
    int rc = env->rep_set_transport(env, repbroker_site_id(transport->client), transport_send);
    if (rc) {
        bdb_transport_remove(env);
        return bdb_fail(REPBROKER_BDB_EDB, "DB_ENV->rep_set_transport: %s", db_strerror(rc));
    }
    return REPBROKER_BDB_OK;
}

void bdb_transport_remove(DB_ENV *env) {
    pthread_mutex_lock(&slots_lock);
    for (int i = 0; i < TRANSPORT_SLOTS; i++) {
        if (atomic_load(&slot_env[i]) == env) {
            atomic_store_explicit(&slot_env[i], NULL, memory_order_release);
            atomic_store_explicit(&slot_transport[i], NULL, memory_order_release);
        }
    }
    pthread_mutex_unlock(&slots_lock);
}

int bdb_is_alive(DB_ENV *env, pid_t pid, db_threadid_t thread, u_int32_t flags) {
    (void)env;
    (void)thread;
    (void)flags;
    return kill(pid, 0) == 0 || errno != ESRCH;
}

int repbroker_bdb_configure(DB_ENV *env) {
    if (!env) return bdb_fail(REPBROKER_BDB_EINVAL, "env is NULL");
    u_int32_t threads = 0;
    int rc = env->get_thread_count(env, &threads);
    if (rc == 0 && threads == 0) rc = env->set_thread_count(env, 64);
    if (rc) return bdb_fail(REPBROKER_BDB_EDB, "DB_ENV->set_thread_count (before DB_ENV->open): %s", db_strerror(rc));
    if ((rc = env->set_isalive(env, bdb_is_alive)))
        return bdb_fail(REPBROKER_BDB_EDB, "DB_ENV->set_isalive: %s", db_strerror(rc));
    if ((rc = env->set_lk_detect(env, DB_LOCK_DEFAULT)))
        return bdb_fail(REPBROKER_BDB_EDB, "DB_ENV->set_lk_detect: %s", db_strerror(rc));
    return REPBROKER_BDB_OK;
}

/* ---- writers ---- */

struct repbroker_writer {
    DB_ENV *env;
    bdb_transport transport;
};

void repbroker_writer_options_init(repbroker_writer_options *options) {
    memset(options, 0, sizeof *options);
    options->ack_policy = REPBROKER_ACK_QUORUM;
    options->ack_timeout_ms = 1000;
    options->send_timeout_ms = 5000;
}

int repbroker_writer_attach(DB_ENV *env, const repbroker_writer_options *options, repbroker_writer **writer) {
    if (!writer) return bdb_fail(REPBROKER_BDB_EINVAL, "writer is NULL");
    *writer = NULL;
    if (!env || !options) return bdb_fail(REPBROKER_BDB_EINVAL, "env and options are required");
    repbroker_options client_options;
    repbroker_options_init(&client_options);
    client_options.socket_path = options->socket_path;
    client_options.group = options->group;
    client_options.name = options->name;
    client_options.roles = REPBROKER_ROLE_SENDER;
    client_options.ack_policy = options->ack_policy;
    client_options.ack_timeout_ms = options->ack_timeout_ms;
    client_options.send_timeout_ms = options->send_timeout_ms;
    repbroker_writer *created = calloc(1, sizeof *created);
    if (!created) return bdb_fail(REPBROKER_BDB_ESYSTEM, "out of memory");
    int status = repbroker_open(&client_options, &created->transport.client);
    if (status != REPBROKER_OK) {
        free(created);
        return bdb_fail(status == REPBROKER_EINVAL ? REPBROKER_BDB_EINVAL : REPBROKER_BDB_EBROKER,
                        "repbroker_open: %s: %s", repbroker_strerror(status), repbroker_last_error(NULL));
    }
    created->env = env;
    int rc = bdb_transport_install(env, &created->transport);
    if (rc) {
        repbroker_close(created->transport.client);
        free(created);
        return rc;
    }
    *writer = created;
    return REPBROKER_BDB_OK;
}

int repbroker_writer_stat(repbroker_writer *writer, repbroker_writer_stats *stats) {
    if (!writer || !stats) return bdb_fail(REPBROKER_BDB_EINVAL, "writer and stats are required");
    stats->messages_sent = atomic_load_explicit(&writer->transport.sent, memory_order_relaxed);
    stats->send_failures = atomic_load_explicit(&writer->transport.send_failures, memory_order_relaxed);
    stats->perm_acked = atomic_load_explicit(&writer->transport.perm_acked, memory_order_relaxed);
    stats->perm_failed = atomic_load_explicit(&writer->transport.perm_failed, memory_order_relaxed);
    return REPBROKER_BDB_OK;
}

repbroker_client *repbroker_writer_client(repbroker_writer *writer) { return writer ? writer->transport.client : NULL; }

void repbroker_writer_detach(repbroker_writer *writer) {
    if (!writer) return;
    bdb_transport_remove(writer->env);
    repbroker_close(writer->transport.client);
    free(writer);
}
