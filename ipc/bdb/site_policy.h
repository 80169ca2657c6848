/*
 * The site agent's decisions: when to hold an election and with what nsites and nvotes, when to restart as
 * master or client, when to heartbeat. Events and the time come in, actions go out: no clock, no system call,
 * no Berkeley DB call, so tests drive it in-process (tests/policy_check.c). The agent's threads call it under
 * the site's lock and carry out what it returns.
 */
#ifndef REPBROKER_SITE_POLICY_H
#define REPBROKER_SITE_POLICY_H

#include <stdint.h>

#define SITE_POLICY_MAX_PEERS 255

typedef struct site_policy_config {
    int32_t self;
    uint32_t nsites;               /* the group's size; 0: 1 + the peers the broker reported */
    uint64_t election_retry_ns;    /* the least time between elections */
    uint64_t heartbeat_ns;         /* rep_flush period as master */
    uint64_t master_silence_ns;    /* silence from the master that calls an election */
    uint64_t ack_hold_ns;          /* no acks this long after an election of this site ended without a master */
} site_policy_config;

enum site_action_bits {
    SITE_ACT_START_MASTER = 1u, /* rep_start(MASTER): became master, or re-announce to a returning site */
    SITE_ACT_START_CLIENT = 2u, /* rep_start(CLIENT): ask the master for what was missed, or step down */
    SITE_ACT_ELECT = 4u,        /* rep_elect(nsites, nvotes) on the election thread; then site_policy_election_done */
    SITE_ACT_FLUSH = 8u         /* rep_flush: the master's heartbeat */
};

typedef enum site_elect_reason {
    SITE_ELECT_MASTER_DOWN = 1, /* the master's site went down (reason_site) */
    SITE_ELECT_ASKED,           /* Berkeley DB asked (DB_REP_HOLDELECTION): another site's vote */
    SITE_ELECT_NO_MASTER,       /* no master known */
    SITE_ELECT_MASTER_SILENT,   /* no word from the master (reason_site) for master_silence_ns */
    SITE_ELECT_DUPMASTER        /* two masters: this one stepped down */
} site_elect_reason;

typedef struct site_actions {
    unsigned bits;
    uint32_t nsites, nvotes;      /* SITE_ACT_ELECT */
    site_elect_reason reason;
    int32_t reason_site;
} site_actions;

typedef struct site_policy {
    site_policy_config config;
    int is_master;
    int32_t master;              /* 0: none known */
    int electing;
    int become_master;           /* DB_EVENT_REP_ELECTED seen: rep_start(MASTER) at the next tick */
    int restart_as_client;       /* DUPMASTER seen */
    uint64_t last_election, last_flush, last_from_master;
    uint64_t ack_hold_until;     /* acks withheld until then (an election that found no master) */
    int32_t peers[SITE_POLICY_MAX_PEERS];
    uint8_t up[SITE_POLICY_MAX_PEERS];
    uint32_t npeers;
    uint64_t elections;
    uint64_t dupmasters;
} site_policy;

void site_policy_init(site_policy *policy, const site_policy_config *config, uint64_t now);

/* The group's size (configured, or 1 + peers reported) and its majority; 0 while unknown. */
uint32_t site_policy_group_size(const site_policy *policy);
uint32_t site_policy_sites_up(const site_policy *policy);

/* Broker events. */
site_actions site_policy_site_up(site_policy *policy, int32_t site, uint64_t now);
site_actions site_policy_site_down(site_policy *policy, int32_t site, uint64_t now);
/* A message from `source` arrived. */
void site_policy_heard(site_policy *policy, int32_t source, uint64_t now);

/* Berkeley DB's results and events. */
site_actions site_policy_election_asked(site_policy *policy, uint64_t now);
void site_policy_started(site_policy *policy, int as_master, uint64_t now);
void site_policy_elected(site_policy *policy);
void site_policy_new_master(site_policy *policy, int32_t site, uint64_t now);
void site_policy_became_client(site_policy *policy);
void site_policy_dupmaster(site_policy *policy);
/* rep_elect returned `result` (0: a master was elected). */
void site_policy_election_done(site_policy *policy, int result, uint64_t now);

/* Whether a DB_REP_ISPERM for a message from `source` may be acknowledged to it. Only the master this site
 * follows is acknowledged, and not while this site's vote may still count in an election: from the election's
 * start until rep_elect returns with a master, or, when it returned without one, for ack_hold_ns more (the other
 * sites' elections, started about when this one did, may still end with its vote).
 *
 * Why: a vote carries the voter's log end. A site that voted and then acknowledged newer records of the old
 * master (its partition healed during the election) would let the old master count a quorum that the election
 * did not see: the winner, elected on the older votes, lacks those records and rolls them back at every site.
 * `bdb-chaos --seed 2027` lost 78 acknowledged commits that way before this rule. */
int site_policy_may_acknowledge(const site_policy *policy, int32_t source, uint64_t now);

/* Time passed: restarts owed, the heartbeat, elections for a missing or silent master. */
site_actions site_policy_tick(site_policy *policy, uint64_t now);

#endif
