/*
 * kvstore: a replicated key-value store on Berkeley DB 5.3 and librepbroker-bdb, moved from the Replication
 * Manager (README "Migrating from repmgr"). One process per site replicates; any number of writer processes
 * put keys while their site is master.
 *
 *   kvstore replicate HOME SOCKET NSITES [master]   the site's replication process (until SIGTERM)
 *   kvstore put HOME SOCKET KEY VALUE               a writer process: one transaction; exit 3 at a client
 *
 *   cc kvstore.c $(pkg-config --cflags --libs repbroker-bdb)
 *
 * With repmgr the same program called repmgr_site (its own address and a helper's), rep_set_priority,
 * repmgr_set_ack_policy(DB_REPMGR_ACKS_QUORUM) and repmgr_start(env, 3, DB_REP_ELECTION) in the replicating
 * process, and repmgr_start(env, 0, DB_REP_CLIENT) as a subordinate process in every writer: each writer then
 * opened its own connections to every other site.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repbroker_bdb.h"

#define FLAGS (DB_THREAD | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK | DB_INIT_MPOOL)

/* Events from the agent: what repmgr's DB_EVENT_REP_* callback would have said. */
static void on_event(void *context, const repbroker_site_event *event) {
    (void)context;
    switch (event->kind) {
    case REPBROKER_SITE_ROLE_MASTER: printf("master\n"); break;
    case REPBROKER_SITE_NEW_MASTER: printf("the master is site %d\n", event->site); break;
    case REPBROKER_SITE_STARTUP_DONE: printf("caught up\n"); break;
    case REPBROKER_SITE_RECOVERY_NEEDED: _exit(2); /* restart with DB_RECOVER, writers out */
    case REPBROKER_SITE_REINIT_NEEDED: _exit(3);   /* restart: repbroker_site_prepare_home moves the home aside */
    default: break;
    }
    fflush(stdout);
}

static int replicate(const char *home, const char *socket, unsigned nsites, int master) {
    /* SIGTERM and SIGINT wait for sigwait below: blocked before the agent's threads start, which inherit it. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    char moved[4096];
    if (repbroker_site_prepare_home(home, moved, sizeof moved)) return 1;
    DB_ENV *env = NULL;
    if (db_env_create(&env, 0) || repbroker_bdb_configure(env)) return 1;
    if (env->open(env, home, FLAGS | DB_CREATE | DB_RECOVER | DB_INIT_REP, 0)) return 1;
    repbroker_site_options options;
    repbroker_site_options_init(&options);
    options.socket_path = socket;
    options.nsites = nsites;               /* repmgr: the sites named with repmgr_site */
    options.start_as_master = master;      /* repmgr: DB_REPMGR_CONF_ELECTIONS and repmgr_start's flag */
    options.ack_policy = REPBROKER_ACK_QUORUM;
    options.callback = on_event;
    repbroker_site *site = NULL;
    if (repbroker_site_start(env, &options, &site)) {
        fprintf(stderr, "kvstore: %s\n", repbroker_bdb_last_error());
        return 1;
    }
    int received;
    sigwait(&stop, &received);
    repbroker_site_stop(site);
    env->close(env, 0);
    return 0;
}

static int put(const char *home, const char *socket, const char *key, const char *value) {
    DB_ENV *env = NULL;
    repbroker_writer *writer = NULL;
    repbroker_writer_options options;
    repbroker_writer_options_init(&options); /* quorum acks, as the replication process */
    options.socket_path = socket;
    if (db_env_create(&env, 0) || repbroker_bdb_configure(env) || repbroker_writer_attach(env, &options, &writer)) {
        fprintf(stderr, "kvstore: %s\n", repbroker_bdb_last_error());
        return 1;
    }
    DB *db = NULL;
    int rc = env->open(env, home, FLAGS, 0);
    if (!rc) rc = db_create(&db, env, 0);
    if (!rc) rc = db->open(db, NULL, "kv.db", NULL, DB_BTREE, DB_THREAD | DB_CREATE | DB_AUTO_COMMIT, 0644);
    if (!rc) {
        DBT k, v;
        memset(&k, 0, sizeof k);
        memset(&v, 0, sizeof v);
        k.data = (void *)key;
        k.size = (u_int32_t)strlen(key);
        v.data = (void *)value;
        v.size = (u_int32_t)strlen(value);
        rc = db->put(db, NULL, &k, &v, DB_AUTO_COMMIT);
    }
    repbroker_writer_stats stats;
    repbroker_writer_stat(writer, &stats);
    if (db) db->close(db, 0);
    env->close(env, 0);
    repbroker_writer_detach(writer);
    if (rc == EACCES) return 3; /* a client site: put at the master */
    if (rc) {
        fprintf(stderr, "kvstore: %s\n", db_strerror(rc));
        return 1;
    }
    printf("%s (%s)\n", key, stats.perm_failed ? "committed here, not acknowledged by a quorum" : "committed, quorum acknowledged");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 5 && !strcmp(argv[1], "replicate")) {
        return replicate(argv[2], argv[3], (unsigned)atoi(argv[4]), argc > 5 && !strcmp(argv[5], "master"));
    }
    if (argc == 6 && !strcmp(argv[1], "put")) return put(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr, "usage: kvstore replicate HOME SOCKET NSITES [master] | kvstore put HOME SOCKET KEY VALUE\n");
    return 64;
}
