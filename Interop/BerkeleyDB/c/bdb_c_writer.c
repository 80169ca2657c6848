/*
 * bdb_c_writer: a Berkeley DB writer process in C on librepbroker-bdb, the counterpart of `bdb-site write`.
 * It joins the site's environment (opened and recovered by repbroker-site), attaches as a writer
 * (repbroker_writer_attach: the transport, with the ack policy), and when its site is master commits COUNT
 * transactions of one put each (keys PREFIX-000000 ...), retrying the ones Berkeley DB aborts as a deadlock's loser.
 *
 *   bdb_c_writer --home DIR --socket PATH --count N [--prefix TEXT] [--value-size BYTES]
 *                [--ack-policy none|one|quorum|all] [--ack-timeout-ms MS] [--group NAME] [--warm-up] [--wait-for-go]
 *
 * Output as `bdb-site write`'s: `acked KEY` or `unacked KEY` per transaction, then one JSON line:
 * {"acked":N,"committed":N,"cpu_ms":N,"deadlock_retries":N,"elapsed_ms":N,"latencies_us":[...],
 *  "perm_failures":N,"startup_perm_failures":N,"voluntary_switches":N}. Exit 3 when the site is not master.
 */
#define _DEFAULT_SOURCE /* db.h uses u_int and u_long */
#include <db.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "repbroker_bdb.h"

static repbroker_writer *writer;

/* PERMANENT sends that failed their ack policy so far (a commit whose count moved was not acknowledged). */
static long permanent_failures(void) {
    repbroker_writer_stats stats;
    repbroker_writer_stat(writer, &stats);
    return (long)stats.perm_failed;
}

static const char *option(int argc, char **argv, const char *name, const char *fallback) {
    for (int i = 1; i + 1 < argc; i++) if (!strcmp(argv[i], name)) return argv[i + 1];
    return fallback;
}

static int flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++) if (!strcmp(argv[i], name)) return 1;
    return 0;
}

static void fail(const char *call, int code) {
    fprintf(stderr, "bdb_c_writer: %s: %s\n", call, code > 0 ? strerror(code) : db_strerror(code));
    exit(1);
}

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static long voluntary_switches(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_nvcsw;
}

static long cpu_ms(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000L + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000L;
}

/* One put in its own transaction; DB_LOCK_DEADLOCK is retried (returned in *retries). */
static int put(DB_ENV *env, DB *db, const char *key, const char *value, size_t value_size, long *retries) {
    for (;;) {
        DB_TXN *txn = NULL;
        int rc = env->txn_begin(env, NULL, &txn, 0);
        if (rc) return rc;
        DBT k, v;
        memset(&k, 0, sizeof k);
        memset(&v, 0, sizeof v);
        k.data = (void *)key;
        k.size = (u_int32_t)strlen(key);
        v.data = (void *)value;
        v.size = (u_int32_t)value_size;
        rc = db->put(db, txn, &k, &v, 0);
        if (rc) {
            txn->abort(txn);
            if (rc == DB_LOCK_DEADLOCK && *retries < 1000) { (*retries)++; continue; }
            return rc;
        }
        return txn->commit(txn, 0);
    }
}

/* A value of `size` bytes that names its key (as `bdb-site write`'s). */
static void fill_value(char *value, size_t size, const char *key) {
    int n = snprintf(value, size + 1, "v-%s-", key);
    for (size_t i = (size_t)(n < 0 ? 0 : n); i < size; i++) value[i] = (char)('a' + i % 26);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *home = option(argc, argv, "--home", NULL), *socket = option(argc, argv, "--socket", NULL);
    long count = atol(option(argc, argv, "--count", "0"));
    if (!home || !socket || count < 1) {
        fprintf(stderr, "usage: bdb_c_writer --home DIR --socket PATH --count N [options]\n");
        return 64;
    }
    char default_prefix[32];
    snprintf(default_prefix, sizeof default_prefix, "c%d", (int)getpid());
    const char *prefix = option(argc, argv, "--prefix", default_prefix);
    size_t value_size = (size_t)atol(option(argc, argv, "--value-size", "100"));
    if (value_size < 16) value_size = 16;
    const char *policy = option(argc, argv, "--ack-policy", "quorum");

    repbroker_writer_options options;
    repbroker_writer_options_init(&options);
    options.socket_path = socket;
    options.group = option(argc, argv, "--group", "default");
    options.name = "bdb-c-write";
    options.ack_policy = !strcmp(policy, "none") ? REPBROKER_ACK_NONE : !strcmp(policy, "one") ? REPBROKER_ACK_ONE
                       : !strcmp(policy, "all") ? REPBROKER_ACK_ALL : REPBROKER_ACK_QUORUM;
    options.ack_timeout_ms = (unsigned)atoi(option(argc, argv, "--ack-timeout-ms", "1000"));

    DB_ENV *env = NULL;
    int rc = db_env_create(&env, 0);
    if (rc) fail("db_env_create", rc);
    if (repbroker_bdb_configure(env) || repbroker_writer_attach(env, &options, &writer)) {
        fprintf(stderr, "bdb_c_writer: %s\n", repbroker_bdb_last_error());
        return 1;
    }
    if ((rc = env->open(env, home, DB_THREAD | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK | DB_INIT_MPOOL, 0)))
        fail("DB_ENV->open", rc);
    DB_REP_STAT *stats = NULL;
    if ((rc = env->rep_stat(env, &stats, 0))) fail("rep_stat", rc);
    int master = stats->st_status == DB_REP_MASTER;
    free(stats);
    if (!master) {
        fprintf(stderr, "bdb_c_writer: this site is not the master\n");
        return 3;
    }
    DB *db = NULL;
    if ((rc = db_create(&db, env, 0))) fail("db_create", rc);
    if ((rc = db->open(db, NULL, "kv.db", NULL, DB_BTREE, DB_THREAD | DB_CREATE | DB_AUTO_COMMIT, 0644))) {
        if (rc == EACCES) return 3;
        fail("DB->open(kv.db)", rc);
    }

    char key[96];
    char *value = malloc(value_size + 1);
    long retries = 0, committed = 0, acked = 0;
    if (flag(argc, argv, "--warm-up")) {
        snprintf(key, sizeof key, "%s-warmup", prefix);
        fill_value(value, value_size, key);
        if ((rc = put(env, db, key, value, value_size, &retries))) fail("warm-up put", rc);
    }
    long startup_failures = permanent_failures();
    if (flag(argc, argv, "--wait-for-go")) {
        printf("warm\n");
        char line[64];
        while (fgets(line, sizeof line, stdin) && strcmp(line, "go\n") != 0) {}
    }
    unsigned long *latencies = calloc((size_t)count, sizeof *latencies);
    uint64_t started = now_us();
    long cpu_before = cpu_ms(), switches_before = voluntary_switches();
    for (long i = 0; i < count; i++) {
        snprintf(key, sizeof key, "%s-%06ld", prefix, i);
        fill_value(value, value_size, key);
        long failures_before = permanent_failures();
        uint64_t begin = now_us();
        rc = put(env, db, key, value, value_size, &retries);
        if (rc == EACCES && committed > 0) {
            fprintf(stderr, "bdb_c_writer: the site stopped being master after %ld transactions\n", committed);
            break;
        }
        if (rc) fail("put", rc);
        latencies[committed++] = (unsigned long)(now_us() - begin);
        if (permanent_failures() == failures_before) {
            acked++;
            printf("acked %s\n", key);
        } else {
            printf("unacked %s\n", key);
        }
    }
    long elapsed_ms = (long)((now_us() - started) / 1000u), cpu = cpu_ms() - cpu_before;
    printf("{\"acked\":%ld,\"committed\":%ld,\"cpu_ms\":%ld,\"deadlock_retries\":%ld,\"elapsed_ms\":%ld,\"latencies_us\":[",
           acked, committed, cpu, retries, elapsed_ms);
    for (long i = 0; i < committed; i++) printf(i ? ",%lu" : "%lu", latencies[i]);
    printf("],\"perm_failures\":%ld,\"startup_perm_failures\":%ld,\"voluntary_switches\":%ld}\n",
           permanent_failures() - startup_failures, startup_failures, voluntary_switches() - switches_before);
    free(latencies);
    free(value);
    db->close(db, 0);
    env->close(env, 0);
    repbroker_writer_detach(writer);
    return 0;
}
