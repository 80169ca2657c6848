/* The site agent's life: options, the checks before anything starts, rep_start and the threads, stop, stats,
   and the re-initialization request it leaves in the home. */
#include "bdb_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void repbroker_site_options_init(repbroker_site_options *options) {
    memset(options, 0, sizeof *options);
    options->priority = 100;
    options->ack_policy = REPBROKER_ACK_QUORUM;
    options->ack_timeout_ms = 1000;
    options->election_timeout_ms = 2000;
    options->election_retry_ms = 3000;
    options->heartbeat_ms = 1000;
    options->master_silence_ms = 3000;
    options->failchk_ms = 1000;
}

void bdb_emit(repbroker_site *site, repbroker_site_event_kind kind, int32_t site_id, int code, const char *text) {
    if (!site->options.callback) return;
    repbroker_site_event event = {.kind = kind, .site = site_id, .code = code, .text = text ? text : ""};
    site->options.callback(site->options.context, &event);
}

static int check_options(DB_ENV *env, const repbroker_site_options *options) {
    u_int32_t flags = 0;
    if (env->get_open_flags(env, &flags) != 0) {
        return bdb_fail(REPBROKER_BDB_EINVAL, "the environment is not open: open it (DB_INIT_REP | DB_THREAD) first");
    }
    if (!(flags & DB_INIT_REP)) return bdb_fail(REPBROKER_BDB_EINVAL, "the environment was opened without DB_INIT_REP");
    if (!(flags & DB_THREAD)) {
        return bdb_fail(REPBROKER_BDB_EINVAL, "the environment was opened without DB_THREAD (the agent's threads share it)");
    }
    if (options->site_id < 0) return bdb_fail(REPBROKER_BDB_EINVAL, "site_id %d is negative", options->site_id);
    if (options->nsites > SITE_POLICY_MAX_PEERS + 1) {
        return bdb_fail(REPBROKER_BDB_EINVAL, "nsites %u is more than %d", options->nsites, SITE_POLICY_MAX_PEERS + 1);
    }
    if ((unsigned)options->ack_policy > REPBROKER_ACK_ALL) {
        return bdb_fail(REPBROKER_BDB_EINVAL, "ack_policy %d is not a repbroker_ack_policy", (int)options->ack_policy);
    }
    if (options->nsites == 1 && options->ack_policy == REPBROKER_ACK_ONE) {
        return bdb_fail(REPBROKER_BDB_EINVAL,
                        "ack policy 'one' needs another site to acknowledge, and nsites is 1: use 'none' or 'quorum'");
    }
    if (!options->election_timeout_ms || !options->election_retry_ms || !options->heartbeat_ms) {
        return bdb_fail(REPBROKER_BDB_EINVAL, "election_timeout_ms, election_retry_ms and heartbeat_ms must be positive");
    }
    if (options->master_silence_ms <= options->heartbeat_ms) {
        return bdb_fail(REPBROKER_BDB_EINVAL, "master_silence_ms (%u) must exceed heartbeat_ms (%u), or every heartbeat "
                        "gap calls an election", options->master_silence_ms, options->heartbeat_ms);
    }
    if (options->failchk_ms) {
        u_int32_t threads = 0;
        if (env->get_thread_count(env, &threads) != 0 || threads == 0) {
            return bdb_fail(REPBROKER_BDB_EINVAL, "failchk needs DB_ENV->set_thread_count before DB_ENV->open "
                            "(repbroker_bdb_configure does it), or failchk_ms 0");
        }
    }
    return REPBROKER_BDB_OK;
}

#define DB_CALL(call, what)                                                                        \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_) return bdb_fail(REPBROKER_BDB_EDB, "%s: %s", what, db_strerror(rc_));             \
    } while (0)

/* Replication settings on the open environment. */
static int configure(repbroker_site *site) {
    DB_ENV *env = site->env;
    const repbroker_site_options *options = &site->options;
    DB_CALL(env->rep_set_priority(env, options->priority), "DB_ENV->rep_set_priority");
    if (options->nsites) DB_CALL(env->rep_set_nsites(env, options->nsites), "DB_ENV->rep_set_nsites");
    /* A checkpoint would otherwise hold the message thread for DB_REP_CHECKPOINT_DELAY (30 s by default). */
    DB_CALL(env->rep_set_timeout(env, DB_REP_CHECKPOINT_DELAY, 0), "DB_ENV->rep_set_timeout(CHECKPOINT_DELAY)");
    DB_CALL(env->rep_set_timeout(env, DB_REP_ELECTION_TIMEOUT, options->election_timeout_ms * 1000u),
            "DB_ENV->rep_set_timeout(ELECTION_TIMEOUT)");
    if (options->bulk) DB_CALL(env->rep_set_config(env, DB_REP_CONF_BULK, 1), "DB_ENV->rep_set_config(BULK)");
    DB_CALL(env->set_isalive(env, bdb_is_alive), "DB_ENV->set_isalive");
    env->get_errcall(env, &site->application_errcall);
    env->set_errcall(env, bdb_errcall);
    DB_CALL(env->set_event_notify(env, bdb_event_notify), "DB_ENV->set_event_notify");
    return REPBROKER_BDB_OK;
}

static int open_client(repbroker_site *site) {
    repbroker_options client_options;
    repbroker_options_init(&client_options);
    client_options.socket_path = site->options.socket_path;
    client_options.group = site->options.group;
    client_options.name = "repbroker-site";
    client_options.roles = REPBROKER_ROLE_SENDER | REPBROKER_ROLE_RECEIVER;
    client_options.ack_policy = site->options.ack_policy;
    client_options.ack_timeout_ms = site->options.ack_timeout_ms;
    int status = repbroker_open(&client_options, &site->transport.client);
    if (status != REPBROKER_OK) {
        return bdb_fail(status == REPBROKER_EINVAL ? REPBROKER_BDB_EINVAL : REPBROKER_BDB_EBROKER,
                        "the broker at %s: %s: %s", site->options.socket_path ? site->options.socket_path : "(default)",
                        repbroker_strerror(status), repbroker_last_error(NULL));
    }
    site->site_id = repbroker_site_id(site->transport.client);
    if (site->options.site_id && site->options.site_id != site->site_id) {
        return bdb_fail(REPBROKER_BDB_ESITEID, "the broker at %s serves site %d, not %d",
                        site->options.socket_path ? site->options.socket_path : "(default)", site->site_id,
                        site->options.site_id);
    }
    return REPBROKER_BDB_OK;
}

static void release(repbroker_site *site, int transport_installed) {
    if (transport_installed) {
        site->env->set_event_notify(site->env, NULL);
        site->env->set_errcall(site->env, site->application_errcall);
        bdb_transport_remove(site->env);
    }
    repbroker_close(site->transport.client);
    pthread_mutex_destroy(&site->lock);
    pthread_cond_destroy(&site->wake);
    free(site->home);
    free(site);
}

int bdb_rep_start(repbroker_site *site, int as_master) {
    char cdata[32];
    int length = snprintf(cdata, sizeof cdata, "site=%d", site->site_id);
    DBT dbt;
    memset(&dbt, 0, sizeof dbt);
    dbt.data = cdata;
    dbt.size = (u_int32_t)length;
    int rc = site->env->rep_start(site->env, &dbt, as_master ? DB_REP_MASTER : DB_REP_CLIENT);
    if (rc) return rc;
    pthread_mutex_lock(&site->lock);
    site_policy_started(&site->policy, as_master, bdb_now_ns());
    if (as_master) site->startup_done = 1;
    pthread_mutex_unlock(&site->lock);
    if (as_master) repbroker_announce_master(site->transport.client, site->site_id);
    return 0;
}

int repbroker_site_start(DB_ENV *env, const repbroker_site_options *options, repbroker_site **result) {
    if (!result) return bdb_fail(REPBROKER_BDB_EINVAL, "site is NULL");
    *result = NULL;
    if (!env || !options) return bdb_fail(REPBROKER_BDB_EINVAL, "env and options are required");
    int rc = check_options(env, options);
    if (rc) return rc;
    repbroker_site *site = calloc(1, sizeof *site);
    if (!site) return bdb_fail(REPBROKER_BDB_ESYSTEM, "out of memory");
    site->env = env;
    site->options = *options;
    site->transport.site = site;
    pthread_mutex_init(&site->lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC); /* the failchk thread's timed waits */
    pthread_cond_init(&site->wake, &monotonic);
    pthread_condattr_destroy(&monotonic);
    const char *home = NULL;
    env->get_home(env, &home);
    site->home = strdup(home ? home : ".");
    if ((rc = open_client(site))) {
        release(site, 0);
        return rc;
    }
    site_policy_config policy = {
        .self = site->site_id,
        .nsites = options->nsites,
        .election_retry_ns = (uint64_t)options->election_retry_ms * 1000000u,
        .heartbeat_ns = (uint64_t)options->heartbeat_ms * 1000000u,
        .master_silence_ns = (uint64_t)options->master_silence_ms * 1000000u,
        .ack_hold_ns = (uint64_t)options->election_timeout_ms * 1000000u,
    };
    site_policy_init(&site->policy, &policy, bdb_now_ns());
    if ((rc = bdb_transport_install(env, &site->transport))) {
        release(site, 0);
        return rc;
    }
    if ((rc = configure(site))) {
        release(site, 1);
        return rc;
    }
    int started = bdb_rep_start(site, options->start_as_master);
    if (started) {
        rc = bdb_fail(REPBROKER_BDB_EDB, "DB_ENV->rep_start(%s): %s", options->start_as_master ? "MASTER" : "CLIENT",
                      db_strerror(started));
        release(site, 1);
        return rc;
    }
    if (pthread_create(&site->election_thread, NULL, bdb_election_thread, site)) {
        release(site, 1);
        return bdb_fail(REPBROKER_BDB_ESYSTEM, "cannot start the election thread");
    }
    if (options->failchk_ms) {
        if (pthread_create(&site->failchk_thread, NULL, bdb_failchk_thread, site)) {
            atomic_store(&site->stopping, 1);
            pthread_cond_broadcast(&site->wake);
            pthread_join(site->election_thread, NULL);
            release(site, 1);
            return bdb_fail(REPBROKER_BDB_ESYSTEM, "cannot start the failchk thread");
        }
        site->has_failchk_thread = 1;
    }
    bdb_emit(site, REPBROKER_SITE_READY, site->site_id, 0, NULL);
    if (pthread_create(&site->message_thread, NULL, bdb_message_thread, site)) {
        repbroker_site_stop(site);
        return bdb_fail(REPBROKER_BDB_ESYSTEM, "cannot start the message thread");
    }
    *result = site;
    return REPBROKER_BDB_OK;
}

void repbroker_site_stop(repbroker_site *site) {
    if (!site) return;
    pthread_mutex_lock(&site->lock);
    atomic_store(&site->stopping, 1);
    pthread_cond_broadcast(&site->wake);
    pthread_mutex_unlock(&site->lock);
    if (site->message_thread) pthread_join(site->message_thread, NULL);
    pthread_join(site->election_thread, NULL);
    if (site->has_failchk_thread) pthread_join(site->failchk_thread, NULL);
    release(site, 1);
}

int repbroker_site_stat(repbroker_site *site, repbroker_site_stats *stats) {
    if (!site || !stats) return bdb_fail(REPBROKER_BDB_EINVAL, "site and stats are required");
    memset(stats, 0, sizeof *stats);
    pthread_mutex_lock(&site->lock);
    const site_policy *policy = &site->policy;
    stats->st_status = policy->is_master ? DB_REP_MASTER : DB_REP_CLIENT;
    stats->st_env_id = site->site_id;
    stats->st_master = policy->master;
    stats->st_nsites = site_policy_group_size(policy);
    stats->st_nvotes = stats->st_nsites ? stats->st_nsites / 2 + 1 : 0;
    stats->st_sites_up = site_policy_sites_up(policy);
    stats->st_startup_complete = (uint32_t)site->startup_done;
    stats->st_elections = policy->elections;
    stats->st_elections_won = site->elections_won;
    stats->st_dupmasters = policy->dupmasters;
    stats->st_acks_withheld = site->acks_withheld;
    pthread_mutex_unlock(&site->lock);
    stats->st_msgs_processed = atomic_load(&site->processed);
    stats->st_msgs_send_failures = atomic_load(&site->transport.send_failures);
    stats->st_perm_failed = atomic_load(&site->transport.perm_failed);
    stats->st_perm_acked = atomic_load(&site->transport.perm_acked);
    return REPBROKER_BDB_OK;
}

/* ---- re-initialization ---- */

static void marker_path(char *path, size_t size, const char *home) { snprintf(path, size, "%s/REINITIALIZE", home); }

void bdb_request_reinit(repbroker_site *site, const char *reason) {
    char path[4096];
    marker_path(path, sizeof path, site->home);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    ssize_t written = write(fd, reason, strlen(reason));
    written += write(fd, "\n", 1);
    (void)written;
    fsync(fd);
    close(fd);
}

int repbroker_site_prepare_home(const char *home, char *moved, size_t moved_size) {
    if (!home || !moved || moved_size == 0) return bdb_fail(REPBROKER_BDB_EINVAL, "home and moved are required");
    moved[0] = 0;
    char marker[4096], aside[4096];
    marker_path(marker, sizeof marker, home);
    if (access(marker, F_OK) != 0) return REPBROKER_BDB_OK;
    int number = 1;
    for (;; number++) {
        snprintf(aside, sizeof aside, "%s.reinit-%d", home, number);
        if (mkdir(aside, 0755) == 0) break;
        if (errno != EEXIST) return bdb_fail(REPBROKER_BDB_ESYSTEM, "mkdir %s: %s", aside, strerror(errno));
    }
    DIR *directory = opendir(home);
    if (!directory) return bdb_fail(REPBROKER_BDB_ESYSTEM, "opendir %s: %s", home, strerror(errno));
    struct dirent *entry;
    int rc = REPBROKER_BDB_OK;
    while ((entry = readdir(directory)) != NULL) {
        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
        char from[4096 + 256], to[4096 + 256];
        snprintf(from, sizeof from, "%s/%s", home, entry->d_name);
        snprintf(to, sizeof to, "%s/%s", aside, entry->d_name);
        if (rename(from, to) != 0) {
            rc = bdb_fail(REPBROKER_BDB_ESYSTEM, "rename %s: %s", from, strerror(errno));
            break;
        }
    }
    closedir(directory);
    if (rc == REPBROKER_BDB_OK) snprintf(moved, moved_size, "%s", aside);
    return rc;
}
