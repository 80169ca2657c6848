/* The site agent's decisions (site_policy.h): the election policy that the chaos runs proved. */
#include "site_policy.h"

#include <string.h>

void site_policy_init(site_policy *policy, const site_policy_config *config, uint64_t now) {
    memset(policy, 0, sizeof *policy);
    policy->config = *config;
    policy->last_flush = now;
    policy->last_from_master = now;
    /* The first election for a missing master waits one retry period: the broker's site states and the
       master's announcement arrive first. */
    policy->last_election = now;
}

uint32_t site_policy_group_size(const site_policy *policy) {
    uint32_t reported = policy->npeers + 1;
    if (policy->config.nsites == 0) return policy->npeers ? reported : 0;
    return policy->config.nsites > reported ? policy->config.nsites : reported;
}

uint32_t site_policy_sites_up(const site_policy *policy) {
    uint32_t count = 0;
    for (uint32_t i = 0; i < policy->npeers; i++) count += policy->up[i];
    return count;
}

/* The peer's slot, added when new (NULL when the table is full: such a site counts as never up). */
static uint8_t *peer_state(site_policy *policy, int32_t site) {
    for (uint32_t i = 0; i < policy->npeers; i++) {
        if (policy->peers[i] == site) return &policy->up[i];
    }
    if (policy->npeers == SITE_POLICY_MAX_PEERS) return NULL;
    policy->peers[policy->npeers] = site;
    policy->up[policy->npeers] = 0;
    return &policy->up[policy->npeers++];
}

/* An election, unless one is running, this site is master, or the group's size is not known yet.
 *
 * nvotes is a majority of the whole group. nsites is the sites reported up, this one included, never fewer than
 * nvotes: Berkeley DB then ends phase one without waiting its election timeout for a site whose link is down. A
 * site wrongly reported down only ends phase one sooner: the sites heard are still a majority, so the winner,
 * the most advanced of them, holds every transaction a quorum acknowledged. `joining` (another site's vote
 * started it): that site lost the master already, and this one may not know yet (its broker declares a frozen
 * or cut-off site down up to a tick later), so counting the old master would hold phase one for the whole
 * election timeout: a joining site ends phase one at nvotes, with the same guarantee. */
static void elect(site_policy *policy, site_actions *actions, site_elect_reason reason, int32_t reason_site,
                  int joining, uint64_t now) {
    uint32_t size = site_policy_group_size(policy);
    if (policy->electing || policy->is_master || size == 0) return;
    uint32_t votes = size / 2 + 1;
    uint32_t reachable = 1 + site_policy_sites_up(policy);
    if (reachable > size) reachable = size;
    policy->electing = 1;
    policy->last_election = now;
    policy->elections++;
    actions->bits |= SITE_ACT_ELECT;
    actions->nvotes = votes;
    actions->nsites = joining ? votes : (reachable > votes ? reachable : votes);
    actions->reason = reason;
    actions->reason_site = reason_site;
}

site_actions site_policy_site_up(site_policy *policy, int32_t site, uint64_t now) {
    (void)now;
    site_actions actions = {0};
    uint8_t *up = peer_state(policy, site);
    if (up) *up = 1;
    /* A returning site learns the master (rep_start(MASTER) announces it again); a client whose master came
       back, or that knows none, asks for what it missed. */
    if (policy->is_master) {
        actions.bits |= SITE_ACT_START_MASTER;
    } else if (policy->master == 0 || policy->master == site) {
        actions.bits |= SITE_ACT_START_CLIENT;
    }
    return actions;
}

site_actions site_policy_site_down(site_policy *policy, int32_t site, uint64_t now) {
    site_actions actions = {0};
    uint8_t *up = peer_state(policy, site);
    if (up) *up = 0;
    if (site == policy->master && site != policy->config.self) {
        policy->master = 0;
        elect(policy, &actions, SITE_ELECT_MASTER_DOWN, site, 0, now);
    }
    return actions;
}

void site_policy_heard(site_policy *policy, int32_t source, uint64_t now) {
    if (source == policy->master) policy->last_from_master = now;
}

site_actions site_policy_election_asked(site_policy *policy, uint64_t now) {
    site_actions actions = {0};
    elect(policy, &actions, SITE_ELECT_ASKED, 0, 1, now);
    return actions;
}

void site_policy_started(site_policy *policy, int as_master, uint64_t now) {
    policy->is_master = as_master;
    if (as_master) {
        policy->master = policy->config.self;
        policy->last_from_master = now;
    }
}

void site_policy_elected(site_policy *policy) { policy->become_master = 1; }

void site_policy_new_master(site_policy *policy, int32_t site, uint64_t now) {
    policy->master = site;
    policy->last_from_master = now;
    if (site != policy->config.self) policy->is_master = 0;
}

void site_policy_became_client(site_policy *policy) { policy->is_master = 0; }

void site_policy_dupmaster(site_policy *policy) {
    /* Berkeley DB says it twice (rep_process_message's result and DB_EVENT_REP_DUPMASTER): counted once. */
    if (!policy->restart_as_client) policy->dupmasters++;
    policy->restart_as_client = 1;
}

void site_policy_election_done(site_policy *policy, int result, uint64_t now) {
    policy->electing = 0;
    policy->last_election = now;
    if (result != 0) policy->ack_hold_until = now + policy->config.ack_hold_ns;
}

int site_policy_may_acknowledge(const site_policy *policy, int32_t source, uint64_t now) {
    return !policy->electing && source == policy->master && source != policy->config.self &&
           now >= policy->ack_hold_until;
}

site_actions site_policy_tick(site_policy *policy, uint64_t now) {
    site_actions actions = {0};
    const site_policy_config *config = &policy->config;
    if (policy->become_master) {
        policy->become_master = 0;
        actions.bits |= SITE_ACT_START_MASTER;
    }
    if (policy->restart_as_client) {
        policy->restart_as_client = 0;
        /* Two masters: step down (the election after it picks one). A master elected here meanwhile steps
           down too: the election decides again. */
        actions.bits = (actions.bits & ~SITE_ACT_START_MASTER) | SITE_ACT_START_CLIENT;
        policy->is_master = 0;
        if (policy->master == config->self) policy->master = 0;
        elect(policy, &actions, SITE_ELECT_DUPMASTER, 0, 0, now);
        return actions;
    }
    if (policy->is_master && now - policy->last_flush >= config->heartbeat_ns) {
        policy->last_flush = now;
        actions.bits |= SITE_ACT_FLUSH;
    }
    int due = !policy->electing && now - policy->last_election > config->election_retry_ns;
    if (policy->is_master || (actions.bits & SITE_ACT_START_MASTER) || !due) return actions;
    if (policy->master == 0) {
        elect(policy, &actions, SITE_ELECT_NO_MASTER, 0, 0, now);
    } else if (now - policy->last_from_master > config->master_silence_ns) {
        /* The master heartbeats every heartbeat_ns: silence means it is not master any more (it stepped down
           after DUPMASTER, say) though its site is up, and nobody else would start an election. */
        elect(policy, &actions, SITE_ELECT_MASTER_SILENT, policy->master, 0, now);
    }
    return actions;
}
