/*
 * librepbroker-bdb: a Berkeley DB 5.3 site's replication over repbroker, for C and C++ applications (and
 * anything with a C FFI). It links libdb-5.3 and librepbroker.
 *
 *   cc app.c $(pkg-config --cflags --libs repbroker-bdb)      (libdb-5.3.so from Debian's libdb5.3-dev)
 *
 * A site runs one replication process and any number of writer processes, all on one environment:
 *
 *  - The replication process calls repbroker_site_start once its environment is open (with DB_INIT_REP and
 *    DB_THREAD). The agent then owns the site's replication: it sets the transport, calls rep_start with the
 *    site id as cdata, holds the broker's receiver role and feeds every message to rep_process_message on a
 *    thread of its own, acknowledges DB_REP_ISPERM LSNs to the master it follows (never while its vote may
 *    still count in an election: see site_policy.h), runs elections,
 *    announces the master, heartbeats (rep_flush) as master, runs failchk, and asks for re-initialization
 *    when the site cannot sync. The application hears what happened through its callback.
 *  - A writer process calls repbroker_writer_attach: a sender-only broker client with the ack policy, set as
 *    the environment's transport. Its commits return once the ack policy is met (or the commit's PERMANENT
 *    send failed: Berkeley DB then flushes the log locally, and repbroker_writer_stat counts it).
 *
 * Election policy: nvotes is a majority of the group's sites, so at most one side of a partition elects a
 * master, and every election hears from a site holding each transaction a quorum acknowledged. nsites (the
 * sites whose votes end phase one early) is the sites the broker reports up, this one included, never fewer
 * than nvotes; when another site's vote started the election (DB_REP_HOLDELECTION), nvotes. An election is
 * held when the master's site goes down, when no master is known, and when the master has been silent for
 * master_silence_ms (it heartbeats every heartbeat_ms), at most once per election_retry_ms; a DUPMASTER
 * restarts the site as client and holds one.
 *
 * What the agent takes from the environment: the transport (rep_set_transport), the event callback
 * (set_event_notify: events come through repbroker_site_options.callback instead), the isalive function
 * (set_isalive), and the error callback, which it wraps (an application's callback set before start is still
 * called). DB_ENV->app_private stays the application's.
 *
 * Errors: every function returns REPBROKER_BDB_OK or a repbroker_bdb_error, and repbroker_bdb_last_error()
 * gives the reason for the calling thread's last failure. A failed start leaves no thread running and the
 * broker client closed.
 */
#ifndef REPBROKER_BDB_H
#define REPBROKER_BDB_H

#include <db.h>
#include <stdint.h>

#include "repbroker_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum repbroker_bdb_error {
    REPBROKER_BDB_OK = 0,
    REPBROKER_BDB_EINVAL = 1,   /* an option, or an environment not opened as the agent needs */
    REPBROKER_BDB_EBROKER = 2,  /* the broker is not running at the socket, or refused the client */
    REPBROKER_BDB_ESITEID = 3,  /* the broker serves another site id than the one given */
    REPBROKER_BDB_EDB = 4,      /* a Berkeley DB call failed (the reason names it and db_strerror's text) */
    REPBROKER_BDB_ESYSTEM = 5   /* a thread could not be started, or memory ran out */
} repbroker_bdb_error;

/* The reason for the calling thread's last failed call ("" when none). */
const char *repbroker_bdb_last_error(void);

/* Settings an environment needs before DB_ENV->open for failchk (set_thread_count: 64 unless set already) and
   deadlock detection (set_lk_detect DB_LOCK_DEFAULT). Every process of the site should call it. */
int repbroker_bdb_configure(DB_ENV *env);

/* ---- The site's replication process ---- */

typedef enum repbroker_site_event_kind {
    REPBROKER_SITE_READY = 1,            /* started: rep_start done, the message thread running */
    REPBROKER_SITE_ROLE_MASTER = 2,      /* this site is master (DB_EVENT_REP_MASTER) */
    REPBROKER_SITE_ROLE_CLIENT = 3,      /* this site is a client (DB_EVENT_REP_CLIENT) */
    REPBROKER_SITE_NEW_MASTER = 4,       /* `site` is the master (DB_EVENT_REP_NEWMASTER) */
    REPBROKER_SITE_STARTUP_DONE = 5,     /* this client caught up with the master (DB_EVENT_REP_STARTUPDONE) */
    REPBROKER_SITE_PEER_UP = 6,          /* `site` came up in the group (its link and its replication process) */
    REPBROKER_SITE_PEER_DOWN = 7,        /* `site` went down */
    REPBROKER_SITE_NEW_SITE = 8,         /* `site` joined (DB_REP_NEWSITE); `text` is its cdata */
    REPBROKER_SITE_ELECTION = 9,         /* an election began: `nsites`, `nvotes`, `text` the reason */
    REPBROKER_SITE_ELECTION_DONE = 10,   /* it ended: `code` rep_elect's result, `milliseconds` its length */
    REPBROKER_SITE_DUPMASTER = 11,       /* two masters: this site restarts as client and holds an election */
    REPBROKER_SITE_PERM_FAILED = 12,     /* a PERMANENT send of this process failed its ack policy (`text`) */
    REPBROKER_SITE_ERROR = 13,           /* rep_process_message failed for a message from `site` (`code`, `text`) */
    /* The two that end the agent's work: it stops processing messages and elections; the process should exit
       and be restarted once every process of the site has left the environment. */
    REPBROKER_SITE_RECOVERY_NEEDED = 14, /* DB_RUNRECOVERY or a panic: restart with DB_RECOVER */
    REPBROKER_SITE_REINIT_NEEDED = 15    /* the site cannot sync (DB_REP_JOIN_FAILURE, or a recovery function
                                            failed during sync): REINITIALIZE is written in the home and
                                            repbroker_site_prepare_home moves the environment aside at the next
                                            start, so the master copies itself to the empty site */
} repbroker_site_event_kind;

typedef struct repbroker_site_event {
    repbroker_site_event_kind kind;
    int32_t site;          /* the site concerned, or 0 */
    int code;              /* a Berkeley DB return code, or 0 */
    uint32_t nsites, nvotes;
    uint32_t milliseconds;
    const char *text;      /* NUL-terminated, valid during the callback; "" when none */
} repbroker_site_event;

/* Called from the agent's threads and from inside Berkeley DB (any thread). It must return promptly and make
   no replication call (rep_start, rep_elect, ...); it may exit the process. */
typedef void (*repbroker_site_callback)(void *context, const repbroker_site_event *event);

typedef struct repbroker_site_options {
    const char *socket_path;        /* the broker's socket; NULL: librepbroker's default */
    const char *group;              /* NULL: "default" */
    int32_t site_id;                /* 0: the broker's; else must equal it (REPBROKER_BDB_ESITEID) */
    uint32_t nsites;                /* the group's size, this site included; 0: 1 + the sites the broker
                                       reports (elections wait until it has) */
    uint32_t priority;              /* rep_set_priority; default 100; 0 never becomes master */
    int start_as_master;            /* rep_start(DB_REP_MASTER) at start (a new group's first site) */
    repbroker_ack_policy ack_policy; /* for this process's PERMANENT sends; default REPBROKER_ACK_QUORUM */
    unsigned ack_timeout_ms;        /* default 1000 */
    unsigned election_timeout_ms;   /* DB_REP_ELECTION_TIMEOUT; default 2000 */
    unsigned election_retry_ms;     /* the least time between elections; default 3000 */
    unsigned heartbeat_ms;          /* rep_flush as master; default 1000 */
    unsigned master_silence_ms;     /* an election after this long without word from the master; default 3000 */
    unsigned failchk_ms;            /* failchk period; default 1000; 0: no failchk thread */
    int bulk;                       /* DB_REP_CONF_BULK; default 0, and best left off: over the broker it
                                       doubles a lone writer's commit latency, and when several writer
                                       processes share the master's bulk buffer, clients miss records and
                                       wait for a heartbeat to ask again (commits stall up to the ack
                                       timeout). BENCHMARKS.md has the figures. */
    repbroker_site_callback callback; /* may be NULL */
    void *context;
} repbroker_site_options;

typedef struct repbroker_site repbroker_site;

/* Fills `options` with the defaults above. */
void repbroker_site_options_init(repbroker_site_options *options);

/* Starts the site's replication on `env` (open, with DB_INIT_REP and DB_THREAD). On failure *site is NULL, no
   thread is left running, and repbroker_bdb_last_error() says why: EINVAL for an option (an ack policy the group
   cannot meet: `one` in a group of one) or the environment, EBROKER when no broker answers at the socket, ESITEID
   when it serves another site, EDB when rep_start or a setting failed. */
int repbroker_site_start(DB_ENV *env, const repbroker_site_options *options, repbroker_site **site);

/* Stops the agent's threads (an election in progress is waited for), closes its broker client and frees it.
   Call before DB_ENV->close. Safe with NULL. */
void repbroker_site_stop(repbroker_site *site);

/* The agent's view, in the shape of rep_stat's replication fields where they apply. */
typedef struct repbroker_site_stats {
    uint32_t st_status;             /* DB_REP_MASTER, DB_REP_CLIENT, or 0 */
    int32_t st_env_id;              /* this site */
    int32_t st_master;              /* the master, or 0 (DB_EID_INVALID) when none is known */
    uint32_t st_nsites;             /* the group's size */
    uint32_t st_nvotes;             /* a majority of it */
    uint32_t st_sites_up;           /* peers the broker reports up */
    uint32_t st_startup_complete;   /* 1 once this client caught up (or the site is master) */
    uint64_t st_msgs_processed;     /* messages given to rep_process_message */
    uint64_t st_msgs_send_failures; /* sends this process made that failed */
    uint64_t st_perm_failed;        /* PERMANENT sends that failed their ack policy */
    uint64_t st_perm_acked;         /* PERMANENT sends that met it */
    uint64_t st_elections;          /* elections held */
    uint64_t st_elections_won;
    uint64_t st_dupmasters;
    uint64_t st_acks_withheld;      /* DB_REP_ISPERMs not acknowledged: from another site than the master this
                                       site follows, or while its vote may count in an election */
} repbroker_site_stats;

int repbroker_site_stat(repbroker_site *site, repbroker_site_stats *stats);

/* The environment's home, re-initialized if the last run asked for it: when `home` holds REINITIALIZE,
   everything in it moves to a new directory beside it (HOME.reinit-N, named in `moved`, "" otherwise).
   Call before DB_ENV->open, with no other process in the environment. */
int repbroker_site_prepare_home(const char *home, char *moved, size_t moved_size);

/* ---- A writer process ---- */

typedef struct repbroker_writer_options {
    const char *socket_path;        /* NULL: librepbroker's default */
    const char *group;              /* NULL: "default" */
    const char *name;               /* shown in `repbroker stats`; NULL: "" */
    repbroker_ack_policy ack_policy; /* default REPBROKER_ACK_QUORUM */
    unsigned ack_timeout_ms;        /* default 1000 */
    unsigned send_timeout_ms;       /* default 5000 */
} repbroker_writer_options;

typedef struct repbroker_writer repbroker_writer;

void repbroker_writer_options_init(repbroker_writer_options *options);

/* Opens a sender-only broker client and sets it as `env`'s transport (before or after DB_ENV->open). */
int repbroker_writer_attach(DB_ENV *env, const repbroker_writer_options *options, repbroker_writer **writer);

typedef struct repbroker_writer_stats {
    uint64_t messages_sent;
    uint64_t send_failures;
    uint64_t perm_acked;   /* PERMANENT sends (commits' log flushes) that met the ack policy */
    uint64_t perm_failed;  /* ... that did not */
} repbroker_writer_stats;

int repbroker_writer_stat(repbroker_writer *writer, repbroker_writer_stats *stats);

/* The writer's broker client (for channels: forwarding writes to the master, say). */
repbroker_client *repbroker_writer_client(repbroker_writer *writer);

/* Closes the client and frees the writer. Call after DB_ENV->close. Safe with NULL. */
void repbroker_writer_detach(repbroker_writer *writer);

#ifdef __cplusplus
}
#endif

#endif
