/*
 * repbroker-site: a site's replication process on librepbroker-bdb, for Berkeley DB applications in any
 * language. It opens (and recovers) the site's environment, starts the agent, prints one status line per event,
 * and runs until SIGTERM or SIGINT. Writer processes join the same environment with their own transport
 * (repbroker_writer_attach in C, repbroker.attach_writer in Python).
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repbroker_bdb.h"

static const char usage[] =
    "USAGE: repbroker-site --home DIR --socket PATH --site-id N [options]\n"
    "\n"
    "A Berkeley DB 5.3 site's replication process over repbroker: opens (with recovery) the environment in DIR,\n"
    "holds the broker's receiver role for the group, feeds every message to rep_process_message, acknowledges\n"
    "durable LSNs, holds elections, heartbeats as master and runs failchk. Writers join the environment with\n"
    "their own transport (repbroker_writer_attach, or repbroker.attach_writer in Python).\n"
    "\n"
    "OPTIONS:\n"
    "  --home DIR               the environment's home (created when missing)\n"
    "  --socket PATH            the local broker's client socket\n"
    "  --site-id N              this site's id; must match the broker's\n"
    "  --nsites K               the group's size (default: 1 + the sites the broker knows)\n"
    "  --priority P             election priority (default 100; 0 never becomes master)\n"
    "  --master                 start as master (a new group's first site)\n"
    "  --group NAME             the broker group (default \"default\")\n"
    "  --ack-policy POLICY      none|one|quorum|all for this process's PERMANENT sends (default quorum)\n"
    "  --ack-timeout-ms MS      default 1000\n"
    "  --election-timeout-ms MS DB_REP_ELECTION_TIMEOUT (default 2000)\n"
    "  --heartbeat-ms MS        rep_flush period as master (default 1000)\n"
    "  --master-silence-ms MS   an election after this long without word from the master (default 3000)\n"
    "  --failchk-ms MS          failchk period (default 1000; 0: none)\n"
    "  --bulk                   DB_REP_CONF_BULK (off by default: over the broker it costs commit latency,\n"
    "                           and a master with several writer processes stalls on it)\n"
    "\n"
    "OUTPUT: one line per event: ready site=N, role=master, role=client, master=N, startupdone, site_up N,\n"
    "site_down N, newsite from=N cdata=TEXT, elect reason=\"...\" nsites=N nvotes=N, elect done rc=N ms=N,\n"
    "dupmaster, perm_failed, reinitialized: DIR.\n"
    "\n"
    "EXIT: 0 after SIGTERM or SIGINT; 1 on a start-up error; 2 when the environment needs recovery; 3 when the\n"
    "site must be re-initialized (its environment is moved aside at the next start). Restart it with the site's\n"
    "other processes out of the environment (systemd: dist/repbroker-site@.service).\n";

static void usage_error(const char *message, const char *argument) {
    fprintf(stderr, "repbroker-site: %s%s\n\n%s", message, argument ? argument : "", usage);
    exit(64);
}

static unsigned number(const char *name, const char *text) {
    char *end = NULL;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || !end || *end || end == text || value > UINT_MAX || text[0] == '-') {
        usage_error("not a number for ", name);
    }
    return (unsigned)value;
}

/* Text from outside (a peer's cdata): printable ASCII kept, the rest as \xNN. */
static void escape(const char *text, char *out, size_t size) {
    size_t used = 0;
    for (const unsigned char *c = (const unsigned char *)text; *c && used + 5 < size; c++) {
        if (*c >= 0x20 && *c < 0x7f && *c != '\\' && *c != '"') out[used++] = (char)*c;
        else used += (size_t)snprintf(out + used, size - used, "\\x%02x", *c);
    }
    out[used] = 0;
}

static void on_event(void *context, const repbroker_site_event *event) {
    (void)context;
    char text[1024];
    switch (event->kind) {
    case REPBROKER_SITE_READY: printf("ready site=%d\n", event->site); break;
    case REPBROKER_SITE_ROLE_MASTER: printf("role=master\n"); break;
    case REPBROKER_SITE_ROLE_CLIENT: printf("role=client\n"); break;
    case REPBROKER_SITE_NEW_MASTER: printf("master=%d\n", event->site); break;
    case REPBROKER_SITE_STARTUP_DONE: printf("startupdone\n"); break;
    case REPBROKER_SITE_PEER_UP: printf("site_up %d\n", event->site); break;
    case REPBROKER_SITE_PEER_DOWN: printf("site_down %d\n", event->site); break;
    case REPBROKER_SITE_NEW_SITE:
        escape(event->text, text, sizeof text);
        printf("newsite from=%d cdata=%s\n", event->site, text);
        break;
    case REPBROKER_SITE_ELECTION:
        printf("elect reason=\"%s\" nsites=%u nvotes=%u\n", event->text, event->nsites, event->nvotes);
        break;
    case REPBROKER_SITE_ELECTION_DONE:
        printf("elect done rc=%d ms=%u%s%s%s\n", event->code, event->milliseconds, event->code ? " (" : "",
               event->text, event->code ? ")" : "");
        break;
    case REPBROKER_SITE_DUPMASTER: printf("dupmaster\n"); break;
    case REPBROKER_SITE_PERM_FAILED:
        escape(event->text, text, sizeof text);
        printf("perm_failed reason=\"%s\"\n", text);
        break;
    case REPBROKER_SITE_ERROR:
        fprintf(stderr, "repbroker-site: %s\n", event->text);
        break;
    case REPBROKER_SITE_RECOVERY_NEEDED:
        fprintf(stderr, "repbroker-site: %s\n", event->text);
        fflush(NULL);
        _exit(2); /* other threads may be inside Berkeley DB: no exit handlers */
    case REPBROKER_SITE_REINIT_NEEDED:
        fprintf(stderr, "repbroker-site: this site cannot sync with the master (%s); its environment is moved aside "
                        "and copied from the master at the next start\n", event->text);
        fflush(NULL);
        _exit(3);
    }
    fflush(stdout);
}

static repbroker_ack_policy policy_named(const char *name) {
    if (!strcmp(name, "none")) return REPBROKER_ACK_NONE;
    if (!strcmp(name, "one")) return REPBROKER_ACK_ONE;
    if (!strcmp(name, "quorum")) return REPBROKER_ACK_QUORUM;
    if (!strcmp(name, "all")) return REPBROKER_ACK_ALL;
    usage_error("--ack-policy must be none, one, quorum or all, not ", name);
    return REPBROKER_ACK_NONE;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *home = NULL;
    repbroker_site_options options;
    repbroker_site_options_init(&options);
    options.callback = on_event;
    int site_id_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *word = argv[i];
        if (!strcmp(word, "--help") || !strcmp(word, "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(word, "--master")) { options.start_as_master = 1; continue; }
        if (!strcmp(word, "--bulk")) { options.bulk = 1; continue; }
        if (i + 1 >= argc) usage_error("a value is missing after ", word);
        const char *value = argv[++i];
        if (!strcmp(word, "--home")) home = value;
        else if (!strcmp(word, "--socket")) options.socket_path = value;
        else if (!strcmp(word, "--site-id")) { options.site_id = (int32_t)number(word, value); site_id_given = 1; }
        else if (!strcmp(word, "--nsites")) options.nsites = number(word, value);
        else if (!strcmp(word, "--priority")) options.priority = number(word, value);
        else if (!strcmp(word, "--group")) options.group = value;
        else if (!strcmp(word, "--ack-policy")) options.ack_policy = policy_named(value);
        else if (!strcmp(word, "--ack-timeout-ms")) options.ack_timeout_ms = number(word, value);
        else if (!strcmp(word, "--election-timeout-ms")) options.election_timeout_ms = number(word, value);
        else if (!strcmp(word, "--heartbeat-ms")) options.heartbeat_ms = number(word, value);
        else if (!strcmp(word, "--master-silence-ms")) options.master_silence_ms = number(word, value);
        else if (!strcmp(word, "--failchk-ms")) options.failchk_ms = number(word, value);
        else usage_error("unknown option ", word);
    }
    if (!home || !options.socket_path || !site_id_given) usage_error("--home, --socket and --site-id are required", NULL);
    if (options.site_id == 0) usage_error("--site-id must be positive", NULL);

    char moved[4096];
    if (repbroker_site_prepare_home(home, moved, sizeof moved)) {
        fprintf(stderr, "repbroker-site: re-initializing %s: %s\n", home, repbroker_bdb_last_error());
        return 1;
    }
    if (moved[0]) printf("reinitialized: the old environment is in %s\n", moved);
    if (mkdir(home, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "repbroker-site: mkdir %s: %s\n", home, strerror(errno));
        return 1;
    }

    /* SIGTERM and SIGINT are taken by sigwait below; the agent's threads inherit the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    DB_ENV *env = NULL;
    int rc = db_env_create(&env, 0);
    if (rc) {
        fprintf(stderr, "repbroker-site: db_env_create: %s\n", db_strerror(rc));
        return 1;
    }
    env->set_errfile(env, stderr);
    env->set_errpfx(env, "bdb");
    if (repbroker_bdb_configure(env)) {
        fprintf(stderr, "repbroker-site: %s\n", repbroker_bdb_last_error());
        return 1;
    }
    u_int32_t flags = DB_CREATE | DB_RECOVER | DB_THREAD | DB_INIT_REP | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK |
                      DB_INIT_MPOOL;
    if ((rc = env->open(env, home, flags, 0))) {
        fprintf(stderr, "repbroker-site: DB_ENV->open(%s): %s\n", home, db_strerror(rc));
        env->close(env, 0);
        return rc == DB_RUNRECOVERY ? 2 : 1;
    }
    repbroker_site *site = NULL;
    if (repbroker_site_start(env, &options, &site)) {
        fprintf(stderr, "repbroker-site: %s\n", repbroker_bdb_last_error());
        env->close(env, 0);
        return 1;
    }
    int received = 0;
    sigwait(&stop_signals, &received);
    repbroker_site_stop(site);
    env->close(env, 0);
    return 0;
}
