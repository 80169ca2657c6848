/*
 * Checks of librepbroker-bdb that need no group: the election policy driven in-process (no clock, no threads),
 * and the bad starts, each a clear error with no thread left running. And two writers for the group tests.
 *
 *   agent_check policy
 *   agent_check bad-start HOME SOCKET     (a broker serving site 1 at SOCKET; HOME an empty directory)
 *       prints one line per check and "ok" last; exits 1 at the first failure.
 *   agent_check hold HOME SOCKET KEY      a writer: puts KEY in kv.db in a transaction it never ends, prints
 *                                         "holding" and waits to be killed
 *   agent_check put HOME SOCKET KEY       a writer: puts KEY=from-put and commits; exit 0 once committed
 */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repbroker_bdb.h"
#include "site_policy.h"

static int failures;

#define EXPECT(condition)                                                                          \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #condition);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define MS 1000000ull

static site_policy make(int32_t self, uint32_t nsites) {
    site_policy policy;
    site_policy_config config = {.self = self, .nsites = nsites, .election_retry_ns = 3000 * MS,
                                 .heartbeat_ns = 1000 * MS, .master_silence_ns = 3000 * MS,
                                 .ack_hold_ns = 2000 * MS};
    site_policy_init(&policy, &config, 0);
    return policy;
}

static void policy_checks(void) {
    /* A client of a 5-site group whose master (site 1) goes down with two other sites up: nvotes 3, nsites
       1 + 2 up = 3 (never fewer than nvotes). */
    site_policy p = make(2, 5);
    site_policy_started(&p, 0, 0);
    for (int32_t s = 1; s <= 5; s++) if (s != 2) site_policy_site_up(&p, s, 0);
    site_policy_new_master(&p, 1, 10 * MS);
    site_policy_site_down(&p, 5, 20 * MS);
    site_actions a = site_policy_site_down(&p, 1, 30 * MS);
    EXPECT(a.bits == SITE_ACT_ELECT && a.nvotes == 3 && a.nsites == 3 && a.reason == SITE_ELECT_MASTER_DOWN &&
           a.reason_site == 1);
    EXPECT(p.master == 0);
    /* No second election while one runs, even when Berkeley DB asks. */
    EXPECT(site_policy_election_asked(&p, 40 * MS).bits == 0);
    site_policy_election_done(&p, -30975 /* DB_REP_UNAVAIL */, 2000 * MS);
    /* Nor before election_retry has passed, when no master is known. */
    EXPECT(site_policy_tick(&p, 4000 * MS).bits == 0);
    a = site_policy_tick(&p, 5001 * MS);
    EXPECT(a.bits == SITE_ACT_ELECT && a.reason == SITE_ELECT_NO_MASTER);
    site_policy_election_done(&p, 0, 6000 * MS);
    printf("policy: master down elects with nsites = sites up, nvotes = majority; one election at a time\n");

    /* Another site's vote (DB_REP_HOLDELECTION): phase one ends at nvotes. */
    p = make(3, 5);
    for (int32_t s = 1; s <= 5; s++) if (s != 3) site_policy_site_up(&p, s, 0);
    a = site_policy_election_asked(&p, 10 * MS);
    EXPECT(a.bits == SITE_ACT_ELECT && a.nsites == 3 && a.nvotes == 3 && a.reason == SITE_ELECT_ASKED);
    printf("policy: a joining site ends phase one at nvotes\n");

    /* Elected: rep_start(MASTER) at the next tick; then heartbeats every heartbeat_ns, no elections. */
    site_policy_elected(&p);
    a = site_policy_tick(&p, 20 * MS);
    EXPECT(a.bits == SITE_ACT_START_MASTER);
    site_policy_election_done(&p, 0, 20 * MS);
    site_policy_started(&p, 1, 25 * MS);
    EXPECT(p.master == 3 && p.is_master);
    EXPECT(site_policy_tick(&p, 900 * MS).bits == 0);
    EXPECT(site_policy_tick(&p, 1100 * MS).bits == SITE_ACT_FLUSH);
    EXPECT(site_policy_tick(&p, 10000 * MS).bits == SITE_ACT_FLUSH);
    /* A returning site hears the master again. */
    EXPECT(site_policy_site_up(&p, 4, 10000 * MS).bits == SITE_ACT_START_MASTER);
    printf("policy: elected becomes master, heartbeats, re-announces to a returning site\n");

    /* Two masters: step down and elect. */
    site_policy_dupmaster(&p);
    site_policy_dupmaster(&p); /* the event and rep_process_message's result: one DUPMASTER */
    a = site_policy_tick(&p, 20000 * MS);
    EXPECT((a.bits & SITE_ACT_START_CLIENT) && (a.bits & SITE_ACT_ELECT) && !(a.bits & SITE_ACT_START_MASTER));
    EXPECT(a.reason == SITE_ELECT_DUPMASTER && !p.is_master && p.dupmasters == 1);
    printf("policy: DUPMASTER restarts as client and elects\n");

    /* A master that went quiet though its site is up: an election after master_silence. */
    p = make(2, 3);
    site_policy_site_up(&p, 1, 0);
    site_policy_site_up(&p, 3, 0);
    site_policy_new_master(&p, 1, 0);
    site_policy_heard(&p, 1, 1000 * MS);
    site_policy_heard(&p, 3, 3500 * MS); /* a client's message is not the master's */
    EXPECT(site_policy_tick(&p, 3900 * MS).bits == 0);
    a = site_policy_tick(&p, 4100 * MS);
    EXPECT(a.bits == SITE_ACT_ELECT && a.reason == SITE_ELECT_MASTER_SILENT && a.reason_site == 1);
    printf("policy: a silent master calls an election after master_silence\n");

    /* The group's size from the broker: no election until a site was reported. */
    p = make(1, 0);
    EXPECT(site_policy_group_size(&p) == 0);
    EXPECT(site_policy_tick(&p, 10000 * MS).bits == 0);
    site_policy_site_down(&p, 2, 10000 * MS);
    site_policy_site_down(&p, 3, 10000 * MS);
    EXPECT(site_policy_group_size(&p) == 3);
    a = site_policy_tick(&p, 20000 * MS);
    EXPECT(a.bits == SITE_ACT_ELECT && a.nvotes == 2 && a.nsites == 2);
    printf("policy: nsites 0 learns the group from the broker and waits for it\n");

    /* Acks: only to the master this site follows, never while its vote may still count. The replay of
       bdb-chaos --seed 2027: master 2 is cut off; sites 3, 4, 5 elect; the partition heals during the election
       and 2's newer records arrive at the voters, which must not acknowledge them (the winner, elected on their
       older votes, would roll back what 2 counted as acknowledged by a quorum). */
    p = make(3, 5);
    for (int32_t s = 1; s <= 5; s++) if (s != 3) site_policy_site_up(&p, s, 0);
    site_policy_new_master(&p, 2, 0);
    EXPECT(site_policy_may_acknowledge(&p, 2, 100 * MS));
    EXPECT(!site_policy_may_acknowledge(&p, 4, 100 * MS)); /* not the master */
    a = site_policy_site_down(&p, 2, 1000 * MS);
    EXPECT(a.bits & SITE_ACT_ELECT);
    site_policy_site_up(&p, 2, 1500 * MS);                  /* healed during the election */
    EXPECT(!site_policy_may_acknowledge(&p, 2, 1600 * MS)); /* electing, and 2 is no longer followed */
    site_policy_new_master(&p, 2, 1700 * MS);               /* 2 answers the restart as client */
    EXPECT(!site_policy_may_acknowledge(&p, 2, 1800 * MS)); /* still electing */
    site_policy_election_done(&p, -30975, 3000 * MS);       /* the election ended without a master here */
    EXPECT(!site_policy_may_acknowledge(&p, 2, 4900 * MS)); /* others may still elect with this vote */
    EXPECT(site_policy_may_acknowledge(&p, 2, 5000 * MS));
    /* An election that found a master: the new one is acknowledged at once, the old one never. */
    a = site_policy_site_down(&p, 2, 20000 * MS);
    EXPECT(a.bits & SITE_ACT_ELECT);
    site_policy_new_master(&p, 4, 20100 * MS);
    site_policy_election_done(&p, 0, 20100 * MS);
    EXPECT(site_policy_may_acknowledge(&p, 4, 20100 * MS) && !site_policy_may_acknowledge(&p, 2, 20100 * MS));
    printf("policy: acks only to the followed master, none while this site's vote may count\n");

    /* A client that knows no master asks for one when a site comes up; one with another master does not. */
    p = make(2, 3);
    EXPECT(site_policy_site_up(&p, 3, 0).bits == SITE_ACT_START_CLIENT);
    site_policy_new_master(&p, 1, 0);
    EXPECT(site_policy_site_up(&p, 3, 0).bits == 0);
    EXPECT(site_policy_site_up(&p, 1, 0).bits == SITE_ACT_START_CLIENT);
    printf("policy: rep_start(CLIENT) when the master or a first site comes up\n");
}

static int threads_now(void) {
    DIR *tasks = opendir("/proc/self/task");
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(tasks)) != NULL) count += entry->d_name[0] != '.';
    closedir(tasks);
    return count;
}

/* An environment of its own in HOME/NAME (an environment's flags are fixed when it is made). */
static DB_ENV *open_env(const char *home, const char *name, u_int32_t flags) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", home, name);
    mkdir(path, 0755);
    DB_ENV *env = NULL;
    if (db_env_create(&env, 0)) return NULL;
    repbroker_bdb_configure(env);
    if (env->open(env, path, DB_CREATE | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK | DB_INIT_MPOOL | flags, 0)) {
        env->close(env, 0);
        return NULL;
    }
    return env;
}

/* One bad start: the error expected, a reason containing `needle`, no thread left. */
static void bad_start(const char *what, DB_ENV *env, repbroker_site_options *options, int expected, const char *needle) {
    int before = threads_now();
    repbroker_site *site = (repbroker_site *)1;
    int rc = repbroker_site_start(env, options, &site);
    const char *reason = repbroker_bdb_last_error();
    EXPECT(rc == expected);
    EXPECT(site == NULL);
    EXPECT(strstr(reason, needle) != NULL);
    EXPECT(threads_now() == before);
    printf("bad start: %s: error %d: %s (threads %d -> %d)\n", what, rc, reason, before, threads_now());
}

static void bad_start_checks(const char *home, const char *socket) {
    repbroker_site_options options;
    repbroker_site_options_init(&options);
    options.socket_path = socket;
    options.site_id = 1;
    options.nsites = 3;

    DB_ENV *env = open_env(home, "no-rep", DB_THREAD);
    if (!env) exit(1);
    bad_start("no DB_INIT_REP", env, &options, REPBROKER_BDB_EINVAL, "DB_INIT_REP");
    env->close(env, 0);
    env = open_env(home, "no-thread", DB_INIT_REP);
    if (!env) exit(1);
    bad_start("no DB_THREAD", env, &options, REPBROKER_BDB_EINVAL, "DB_THREAD");
    env->close(env, 0);

    env = open_env(home, "site", DB_INIT_REP | DB_THREAD);
    if (!env) exit(1);
    options.site_id = 7;
    bad_start("another site id", env, &options, REPBROKER_BDB_ESITEID, "serves site 1, not 7");
    options.site_id = 1;
    options.socket_path = "/nonexistent/broker.sock";
    bad_start("no broker", env, &options, REPBROKER_BDB_EBROKER, "/nonexistent/broker.sock");
    options.socket_path = socket;
    options.nsites = 1;
    options.ack_policy = REPBROKER_ACK_ONE;
    bad_start("ack policy one, alone", env, &options, REPBROKER_BDB_EINVAL, "another site");
    options.ack_policy = REPBROKER_ACK_QUORUM;
    options.master_silence_ms = 500;
    bad_start("silence shorter than the heartbeat", env, &options, REPBROKER_BDB_EINVAL, "master_silence_ms");

    /* And a good start and stop afterwards: the handle was left usable. */
    repbroker_site_options_init(&options);
    options.socket_path = socket;
    options.nsites = 1;
    options.start_as_master = 1;
    int before = threads_now();
    repbroker_site *site = NULL;
    int rc = repbroker_site_start(env, &options, &site);
    EXPECT(rc == REPBROKER_BDB_OK);
    if (rc) fprintf(stderr, "start: %s\n", repbroker_bdb_last_error());
    repbroker_site_stats stats;
    EXPECT(repbroker_site_stat(site, &stats) == REPBROKER_BDB_OK);
    EXPECT(stats.st_status == DB_REP_MASTER && stats.st_env_id == 1 && stats.st_master == 1 && stats.st_nsites == 1);
    repbroker_site_stop(site);
    EXPECT(threads_now() == before);
    printf("good start after them: master of a group of one; stop leaves %d threads\n", threads_now());
    env->close(env, 0);
}

/* A writer process joined to the site's environment (opened by repbroker-site). */
static DB_ENV *join(const char *home, const char *socket, DB **db) {
    DB_ENV *env = NULL;
    repbroker_writer *writer = NULL;
    repbroker_writer_options options;
    repbroker_writer_options_init(&options);
    options.socket_path = socket;
    if (db_env_create(&env, 0) || repbroker_bdb_configure(env) || repbroker_writer_attach(env, &options, &writer)) {
        fprintf(stderr, "agent_check: %s\n", repbroker_bdb_last_error());
        exit(1);
    }
    int rc = env->open(env, home, DB_THREAD | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK | DB_INIT_MPOOL, 0);
    if (!rc) rc = db_create(db, env, 0);
    if (!rc) rc = (*db)->open(*db, NULL, "kv.db", NULL, DB_BTREE, DB_THREAD | DB_CREATE | DB_AUTO_COMMIT, 0644);
    if (rc) {
        fprintf(stderr, "agent_check: joining %s: %s\n", home, db_strerror(rc));
        exit(1);
    }
    return env;
}

static int write_key(const char *home, const char *socket, const char *key, int commit) {
    DB *db = NULL;
    DB_ENV *env = join(home, socket, &db);
    DB_TXN *txn = NULL;
    DBT k, v;
    memset(&k, 0, sizeof k);
    memset(&v, 0, sizeof v);
    k.data = (void *)key;
    k.size = (u_int32_t)strlen(key);
    v.data = commit ? "from-put" : "from-hold";
    v.size = (u_int32_t)strlen(v.data);
    int rc = env->txn_begin(env, NULL, &txn, 0);
    if (!rc) rc = db->put(db, txn, &k, &v, 0);
    if (rc) {
        fprintf(stderr, "agent_check: put: %s\n", db_strerror(rc));
        return 1;
    }
    if (!commit) {
        printf("holding\n");
        for (;;) pause();
    }
    if ((rc = txn->commit(txn, 0))) {
        fprintf(stderr, "agent_check: commit: %s\n", db_strerror(rc));
        return 1;
    }
    printf("committed\n");
    db->close(db, 0);
    env->close(env, 0);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "policy")) {
        policy_checks();
    } else if (argc >= 4 && !strcmp(argv[1], "bad-start")) {
        bad_start_checks(argv[2], argv[3]);
    } else if (argc >= 5 && (!strcmp(argv[1], "hold") || !strcmp(argv[1], "put"))) {
        return write_key(argv[2], argv[3], argv[4], !strcmp(argv[1], "put"));
    } else {
        fprintf(stderr, "usage: agent_check policy | bad-start HOME SOCKET | hold|put HOME SOCKET KEY\n");
        return 64;
    }
    if (failures) return 1;
    printf("ok\n");
    return 0;
}
