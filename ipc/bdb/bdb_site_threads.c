/* The agent's threads: the message thread (every message into rep_process_message, broker events, the policy's
   timers and the rep_start calls it asks for), the election thread (rep_elect blocks while the message thread
   must go on), the failchk thread, and Berkeley DB's callbacks into the agent. */
#include "bdb_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void bdb_finish(repbroker_site *site, repbroker_site_event_kind kind, int code, const char *reason) {
    if (atomic_exchange(&site->finished, 1)) return;
    if (kind == REPBROKER_SITE_REINIT_NEEDED) bdb_request_reinit(site, reason);
    bdb_emit(site, kind, site->site_id, code, reason);
    pthread_mutex_lock(&site->lock);
    pthread_cond_broadcast(&site->wake);
    pthread_mutex_unlock(&site->lock);
}

static const char join_failure[] = "join failure: this site cannot sync with the master without an internal init";

static const char *election_reason(const site_actions *actions, char *text, size_t size) {
    switch (actions->reason) {
    case SITE_ELECT_MASTER_DOWN: snprintf(text, size, "master site %d is down", actions->reason_site); break;
    case SITE_ELECT_ASKED: snprintf(text, size, "Berkeley DB asked for an election"); break;
    case SITE_ELECT_NO_MASTER: snprintf(text, size, "no master known"); break;
    case SITE_ELECT_MASTER_SILENT: snprintf(text, size, "no word from master site %d", actions->reason_site); break;
    case SITE_ELECT_DUPMASTER: snprintf(text, size, "two masters"); break;
    }
    return text;
}

/* Carries out what the policy returned, on the message thread: restarts, the heartbeat, an election request. */
static void perform(repbroker_site *site, site_actions actions) {
    if (actions.bits & (SITE_ACT_START_MASTER | SITE_ACT_START_CLIENT)) {
        int as_master = (actions.bits & SITE_ACT_START_MASTER) != 0;
        int rc = bdb_rep_start(site, as_master);
        if (rc) {
            char text[160];
            snprintf(text, sizeof text, "rep_start(%s): %s", as_master ? "MASTER" : "CLIENT", db_strerror(rc));
            bdb_emit(site, REPBROKER_SITE_ERROR, 0, rc, text);
        }
    }
    if (actions.bits & SITE_ACT_FLUSH) site->env->rep_flush(site->env);
    if (actions.bits & SITE_ACT_ELECT) {
        char text[96];
        election_reason(&actions, text, sizeof text);
        if (site->options.callback) {
            repbroker_site_event event = {.kind = REPBROKER_SITE_ELECTION, .site = actions.reason_site,
                                          .nsites = actions.nsites, .nvotes = actions.nvotes, .text = text};
            site->options.callback(site->options.context, &event);
        }
        pthread_mutex_lock(&site->lock);
        site->election_pending = 1;
        site->elect_nsites = actions.nsites;
        site->elect_nvotes = actions.nvotes;
        pthread_cond_broadcast(&site->wake);
        pthread_mutex_unlock(&site->lock);
    }
}

static void process(repbroker_site *site, const repbroker_event *event) {
    pthread_mutex_lock(&site->lock);
    site_policy_heard(&site->policy, event->site, bdb_now_ns());
    pthread_mutex_unlock(&site->lock);
    DBT control, rec;
    memset(&control, 0, sizeof control);
    memset(&rec, 0, sizeof rec);
    control.data = (void *)event->control;
    control.size = (u_int32_t)event->control_length;
    rec.data = (void *)event->rec;
    rec.size = (u_int32_t)event->rec_length;
    DB_LSN permanent = {0, 0};
    uint64_t failures_before = atomic_load(&site->recovery_failures);
    int rc = site->env->rep_process_message(site->env, &control, &rec, event->site, &permanent);
    atomic_fetch_add_explicit(&site->processed, 1, memory_order_relaxed);
    site_actions actions = {0};
    char text[256];
    switch (rc) {
    case 0:
    case DB_REP_NOTPERM:
    case DB_REP_IGNORE:
        break;
    case DB_REP_ISPERM: {
        pthread_mutex_lock(&site->lock);
        int may = site_policy_may_acknowledge(&site->policy, event->site, bdb_now_ns());
        if (!may) site->acks_withheld++;
        pthread_mutex_unlock(&site->lock);
        if (may) {
            repbroker_acknowledge(site->transport.client, (repbroker_lsn){permanent.file, permanent.offset}, event->site);
        }
        break;
    }
    case DB_REP_NEWSITE:
        snprintf(text, sizeof text, "%.*s", (int)(rec.size < 200 ? rec.size : 200), rec.data ? (char *)rec.data : "");
        bdb_emit(site, REPBROKER_SITE_NEW_SITE, event->site, 0, text);
        break;
    case DB_REP_HOLDELECTION:
        pthread_mutex_lock(&site->lock);
        actions = site_policy_election_asked(&site->policy, bdb_now_ns());
        pthread_mutex_unlock(&site->lock);
        break;
    case DB_REP_DUPMASTER:
        pthread_mutex_lock(&site->lock);
        site_policy_dupmaster(&site->policy);
        pthread_mutex_unlock(&site->lock);
        bdb_emit(site, REPBROKER_SITE_DUPMASTER, event->site, rc, NULL);
        break;
    case DB_REP_JOIN_FAILURE:
        bdb_finish(site, REPBROKER_SITE_REINIT_NEEDED, rc, join_failure);
        break;
    case DB_RUNRECOVERY:
        bdb_finish(site, REPBROKER_SITE_RECOVERY_NEEDED, rc, "rep_process_message: the environment needs recovery");
        break;
    default:
        snprintf(text, sizeof text, "rep_process_message from site %d: %s", event->site, db_strerror(rc));
        bdb_emit(site, REPBROKER_SITE_ERROR, event->site, rc, text);
        /* The recovery that rolls a client's log back to the master's failed (seen when a file id was reused
           after the recovery that followed a writer's kill -9). It fails again with every message and after a
           restart with recovery: a copy of the master is the way on. */
        pthread_mutex_lock(&site->lock);
        int master = site->policy.is_master;
        pthread_mutex_unlock(&site->lock);
        if (atomic_load(&site->recovery_failures) != failures_before && !master) {
            strncat(text, " (a recovery function failed)", sizeof text - strlen(text) - 1);
            bdb_finish(site, REPBROKER_SITE_REINIT_NEEDED, rc, text);
        }
    }
    if (actions.bits) perform(site, actions);
}

static void site_changed(repbroker_site *site, int32_t peer, int up) {
    bdb_emit(site, up ? REPBROKER_SITE_PEER_UP : REPBROKER_SITE_PEER_DOWN, peer, 0, NULL);
    pthread_mutex_lock(&site->lock);
    site_actions actions = up ? site_policy_site_up(&site->policy, peer, bdb_now_ns())
                              : site_policy_site_down(&site->policy, peer, bdb_now_ns());
    pthread_mutex_unlock(&site->lock);
    perform(site, actions);
}

void *bdb_message_thread(void *argument) {
    repbroker_site *site = argument;
    while (!atomic_load(&site->stopping) && !atomic_load(&site->finished)) {
        repbroker_event event;
        int status = repbroker_next_event(site->transport.client, 100, &event);
        if (status == REPBROKER_OK) {
            if (event.kind == REPBROKER_EVENT_MESSAGE) process(site, &event);
            else site_changed(site, event.site, event.kind == REPBROKER_EVENT_SITE_UP);
        } else if (status == REPBROKER_ECLOSED) {
            break;
        }
        if (atomic_load(&site->finished)) break;
        pthread_mutex_lock(&site->lock);
        site_actions actions = site_policy_tick(&site->policy, bdb_now_ns());
        pthread_mutex_unlock(&site->lock);
        perform(site, actions);
    }
    return NULL;
}

void *bdb_election_thread(void *argument) {
    repbroker_site *site = argument;
    pthread_mutex_lock(&site->lock);
    for (;;) {
        while (!atomic_load(&site->stopping) && !atomic_load(&site->finished) && !site->election_pending) {
            pthread_cond_wait(&site->wake, &site->lock);
        }
        if (atomic_load(&site->stopping) || atomic_load(&site->finished)) break;
        site->election_pending = 0;
        uint32_t nsites = site->elect_nsites, nvotes = site->elect_nvotes;
        pthread_mutex_unlock(&site->lock);
        uint64_t began = bdb_now_ns();
        int rc = site->env->rep_elect(site->env, nsites, nvotes, 0);
        uint64_t ended = bdb_now_ns();
        pthread_mutex_lock(&site->lock);
        site_policy_election_done(&site->policy, rc, ended);
        pthread_mutex_unlock(&site->lock);
        if (site->options.callback) {
            repbroker_site_event event = {.kind = REPBROKER_SITE_ELECTION_DONE, .code = rc, .nsites = nsites,
                                          .nvotes = nvotes, .milliseconds = (uint32_t)((ended - began) / 1000000u),
                                          .text = rc ? db_strerror(rc) : ""};
            site->options.callback(site->options.context, &event);
        }
        pthread_mutex_lock(&site->lock);
    }
    pthread_mutex_unlock(&site->lock);
    return NULL;
}

/* failchk on a thread of its own: it frees the locks of writer processes that died holding them. A process that
   died inside the library leaves the environment needing recovery, and may leave rep_start waiting for ever for
   its operation to end: so the watch is not on the message thread. */
void *bdb_failchk_thread(void *argument) {
    repbroker_site *site = argument;
    pthread_mutex_lock(&site->lock);
    while (!atomic_load(&site->stopping) && !atomic_load(&site->finished)) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t nanoseconds = (uint64_t)until.tv_nsec + (uint64_t)site->options.failchk_ms * 1000000u;
        until.tv_sec += (time_t)(nanoseconds / 1000000000u);
        until.tv_nsec = (long)(nanoseconds % 1000000000u);
        int waited = pthread_cond_timedwait(&site->wake, &site->lock, &until);
        if (waited != ETIMEDOUT) continue;
        pthread_mutex_unlock(&site->lock);
        int rc = site->env->failchk(site->env, 0);
        if (rc == DB_RUNRECOVERY) {
            bdb_finish(site, REPBROKER_SITE_RECOVERY_NEEDED, rc,
                       "failchk: a process died inside Berkeley DB; the environment needs recovery");
        }
        pthread_mutex_lock(&site->lock);
    }
    pthread_mutex_unlock(&site->lock);
    return NULL;
}

/* set_event_notify's callback: any thread inside Berkeley DB (the message thread's rep_process_message, the
   election thread's rep_elect, a writer's commit). */
void bdb_event_notify(DB_ENV *env, u_int32_t kind, void *info) {
    repbroker_site *site = bdb_site_of(env);
    if (!site) return;
    uint64_t now = bdb_now_ns();
    switch (kind) {
    case DB_EVENT_REP_ELECTED:
        pthread_mutex_lock(&site->lock);
        site_policy_elected(&site->policy);
        site->elections_won++;
        pthread_mutex_unlock(&site->lock);
        break;
    case DB_EVENT_REP_MASTER:
        pthread_mutex_lock(&site->lock);
        site_policy_new_master(&site->policy, site->site_id, now);
        site->startup_done = 1;
        pthread_mutex_unlock(&site->lock);
        bdb_emit(site, REPBROKER_SITE_ROLE_MASTER, site->site_id, 0, NULL);
        repbroker_announce_master(site->transport.client, site->site_id);
        break;
    case DB_EVENT_REP_NEWMASTER: {
        int32_t master = info ? *(int *)info : 0;
        bdb_emit(site, REPBROKER_SITE_NEW_MASTER, master, 0, NULL);
        if (master != site->site_id) {
            pthread_mutex_lock(&site->lock);
            site_policy_new_master(&site->policy, master, now);
            pthread_mutex_unlock(&site->lock);
            repbroker_announce_master(site->transport.client, master);
        }
        break;
    }
    case DB_EVENT_REP_CLIENT:
        pthread_mutex_lock(&site->lock);
        site_policy_became_client(&site->policy);
        pthread_mutex_unlock(&site->lock);
        bdb_emit(site, REPBROKER_SITE_ROLE_CLIENT, site->site_id, 0, NULL);
        break;
    case DB_EVENT_REP_STARTUPDONE:
        pthread_mutex_lock(&site->lock);
        site->startup_done = 1;
        pthread_mutex_unlock(&site->lock);
        bdb_emit(site, REPBROKER_SITE_STARTUP_DONE, site->site_id, 0, NULL);
        break;
    case DB_EVENT_REP_DUPMASTER:
        pthread_mutex_lock(&site->lock);
        site_policy_dupmaster(&site->policy);
        pthread_mutex_unlock(&site->lock);
        break;
    case DB_EVENT_REP_JOIN_FAILURE:
        bdb_finish(site, REPBROKER_SITE_REINIT_NEEDED, DB_REP_JOIN_FAILURE, join_failure);
        break;
    case DB_EVENT_PANIC:
        bdb_finish(site, REPBROKER_SITE_RECOVERY_NEEDED, DB_RUNRECOVERY, "Berkeley DB panic: the environment needs recovery");
        break;
    default:
        break;
    }
}

/* The error callback: counts failed recovery functions (BDB1520 and kin: a client's sync rolls its log back with
   recovery, so one during rep_process_message means that sync failed), then calls the application's. */
void bdb_errcall(const DB_ENV *env, const char *prefix, const char *message) {
    repbroker_site *site = bdb_site_of(env);
    if (!site) return;
    if (message && strstr(message, "Recovery function for LSN")) atomic_fetch_add(&site->recovery_failures, 1);
    if (site->application_errcall) site->application_errcall(env, prefix, message);
}
