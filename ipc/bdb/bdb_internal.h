/* librepbroker-bdb's insides: the transport every process of a site installs, the agent's state, and the
   reason text of failed calls. */
#ifndef REPBROKER_BDB_INTERNAL_H
#define REPBROKER_BDB_INTERNAL_H

#define _DEFAULT_SOURCE /* db.h uses u_int and u_long */
#include <pthread.h>
#include <stdatomic.h>

#include "repbroker_bdb.h"
#include "site_policy.h"

/* A process's transport for one environment: the broker client its send callback hands messages to. Found
   from the DB_ENV in the callback through a lock-free table (DB_ENV->app_private is the application's). */
typedef struct bdb_transport {
    repbroker_client *client;
    atomic_uint_fast64_t sent, send_failures, perm_acked, perm_failed;
    repbroker_site *site; /* the agent that owns it (PERM_FAILED events), or NULL for a writer */
} bdb_transport;

/* Installs `transport` as env's (rep_set_transport with the client's site id). */
int bdb_transport_install(DB_ENV *env, bdb_transport *transport);
/* The agent whose transport env has in this process, or NULL. */
repbroker_site *bdb_site_of(const DB_ENV *env);
/* Forgets env's transport: its send callback then reports every message unsent. */
void bdb_transport_remove(DB_ENV *env);
/* Whether process `pid` lives, for failchk (set_isalive). */
int bdb_is_alive(DB_ENV *env, pid_t pid, db_threadid_t thread, u_int32_t flags);

struct repbroker_site {
    DB_ENV *env;
    bdb_transport transport;
    repbroker_site_options options;
    int32_t site_id;
    char *home;

    pthread_mutex_t lock;   /* guards the policy and the fields below it */
    pthread_cond_t wake;    /* the election and failchk threads wait on it */
    site_policy policy;
    int startup_done;
    uint64_t elections_won;
    uint64_t acks_withheld; /* DB_REP_ISPERMs not acknowledged (site_policy_may_acknowledge) */
    int election_pending;   /* the policy asked for one; the election thread takes it */
    uint32_t elect_nsites, elect_nvotes;

    pthread_t message_thread, election_thread, failchk_thread;
    int has_failchk_thread;
    atomic_int stopping;    /* repbroker_site_stop */
    atomic_int finished;    /* RECOVERY_NEEDED or REINIT_NEEDED was reported: nothing more is processed */
    atomic_uint_fast64_t processed;
    atomic_uint_fast64_t recovery_failures; /* "Recovery function for LSN ... failed" in the error stream */
    void (*application_errcall)(const DB_ENV *, const char *, const char *);
};

/* rep_start with the site id as cdata; on success the policy and the broker hear of it. 0 or a DB error. */
int bdb_rep_start(repbroker_site *site, int as_master);

/* The agent's threads (bdb_site_threads.c). */
void *bdb_message_thread(void *site);
void *bdb_election_thread(void *site);
void *bdb_failchk_thread(void *site);
void bdb_event_notify(DB_ENV *env, u_int32_t event, void *info);
void bdb_errcall(const DB_ENV *env, const char *prefix, const char *message);

/* Tells the application (when it gave a callback). */
void bdb_emit(repbroker_site *site, repbroker_site_event_kind kind, int32_t site_id, int code, const char *text);
/* Reports RECOVERY_NEEDED or REINIT_NEEDED once, and stops the agent's work. */
void bdb_finish(repbroker_site *site, repbroker_site_event_kind kind, int code, const char *reason);
/* Writes the REINITIALIZE request in the site's home. */
void bdb_request_reinit(repbroker_site *site, const char *reason);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bdb_now_ns(void);

/* The calling thread's reason for its last failure; returns `error`. */
int bdb_fail(int error, const char *format, ...) __attribute__((format(printf, 2, 3)));

#endif
