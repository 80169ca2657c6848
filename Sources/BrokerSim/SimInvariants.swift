// The invariants. Safety, after every step: each core's own (credit, queue limits, one receiver: Core.audit),
// every result that says "not queued" counted by its broker, at most one client per site and group that holds
// the receiver role, and no receiver that has caught up still told a site is up whose receiver has been gone
// for five heartbeats. (Deliveries are checked as they happen: SimLedger.) Liveness, once every fault has
// healed: every pair of live sites linked, nothing queued for peers, every receiver told the truth about every
// site, and every message reported queued delivered, unless a crash or a counted drop explains it.
import BrokerCore
import BrokerWire

/// What happened to sites and clients, for the invariants' excuses.
struct SimHistory {
    /// When each site's broker last crashed.
    var lastCrash: [Int32: SimTime] = [:]
    /// When a receiver of each site and group was last killed, or its broker noticed one had been.
    var lastReceiverKill: [String: SimTime] = [:]
    /// Since when each site and group has had no receiver (absent: it has one).
    var receiverGoneSince: [String: SimTime] = [:]

    static func key(_ site: Int32, _ group: String) -> String { "\(site)/\(group)" }
}

extension Simulation {
    func crashed(_ site: Int32) {
        history.lastCrash[site] = now
        let start = now
        for group in workload.groups where history.receiverGoneSince[SimHistory.key(site, group)] == nil {
            history.receiverGoneSince[SimHistory.key(site, group)] = start
        }
    }

    func killed(_ client: SimClient) {
        if client.role == .receiver { history.lastReceiverKill[SimHistory.key(client.site, client.group)] = now }
    }

    /// The broker closed a client's connection: what it had written to a receiver that died before it noticed
    /// (its ring, its socket) is lost with the process, so a receiver's loss counts from when it is noticed.
    func clientClosed(_ client: SimClient) {
        if client.role == .receiver, !client.alive { killed(client) }
    }

    func peerConnections() -> [SimConnection] {
        brokers.flatMap { $0.peerConnectionsDialled }
    }

    // MARK: safety

    func checkSafety() {
        for broker in brokers where broker.alive {
            if let problem = broker.core.audit().first { return violation(problem) }
            let life = Int64(broker.site) << 32 | Int64(broker.crashes)
            let notQueued = ledger.notQueuedResults[life] ?? 0
            if notQueued > broker.core.countedDrops {
                return violation("site \(broker.site) reported \(notQueued) messages not queued and counted "
                    + "\(broker.core.countedDrops) drops")
            }
        }
        var receivers: [String: Int] = [:]
        for client in clients where client.holdsReceiverRole {
            let key = SimHistory.key(client.site, client.group)
            receivers[key, default: 0] += 1
            if receivers[key]! > 1 { return violation("two clients hold the receiver role of \(client.group) at site \(client.site)") }
        }
        trackReceivers()
        let grace = SimTime.ms(UInt64(5 * heartbeatMilliseconds))
        for client in clients where client.holdsReceiverRole && client.isCaughtUp {
            for (site, told) in client.siteUp.sorted(by: { $0.key < $1.key }) where told.up {
                guard let gone = history.receiverGoneSince[SimHistory.key(site, client.group)] else { continue }
                let since = max(gone, told.at, broker(client.site)?.resumedAt ?? 0)
                if now > since + grace {
                    return violation("the receiver of \(client.group) at site \(client.site) was told site \(site) is up; "
                        + "site \(site) has had no receiver in \(client.group) for \((now - gone) / 1_000_000) ms")
                }
            }
        }
    }

    /// Notes when each site and group gains or loses its receiver.
    private func trackReceivers() {
        for broker in brokers {
            for group in workload.groups {
                let key = SimHistory.key(broker.site, group)
                let has = broker.alive && broker.core.hasReceiver(group: group)
                if has {
                    history.receiverGoneSince[key] = nil
                } else if history.receiverGoneSince[key] == nil {
                    history.receiverGoneSince[key] = now
                }
            }
        }
    }

    // MARK: liveness

    /// What has not settled yet; nil once everything has.
    func unsettled() -> String? {
        let live = brokers.filter { $0.alive && !faults.removedSites.contains($0.site) }
        for broker in live {
            let linked = Set(broker.core.linkedSites)
            for other in live where other.site != broker.site && !linked.contains(other.site) {
                return "site \(broker.site) has no link to site \(other.site)"
            }
            let queued = broker.core.queuedForPeers.queued
            if queued > 0 { return "site \(broker.site) still holds \(queued) bytes for peers" }
            let local = broker.core.queuedForClients
            if local.bytes > 0 || local.ringRecords { return "site \(broker.site) still holds messages for its clients" }
        }
        for client in clients where client.alive {
            guard client.connection != nil, client.registered else {
                return "\(client.description) is not registered"
            }
            if !client.isCaughtUp { return "\(client.description) has not read everything" }
            guard client.holdsReceiverRole else { continue }
            for other in live where other.site != client.site {
                let up = other.core.hasReceiver(group: client.group)
                if client.siteUp[other.site]?.up ?? false != up {
                    return "the receiver of \(client.group) at site \(client.site) was told site \(other.site) is "
                        + "\(up ? "down" : "up"); it is \(up ? "up" : "down")"
                }
            }
        }
        for client in clients where client.alive && client.role == .producer {
            if let sequence = ledger.unanswered(key: client.key, connection: client.connections) {
                return "\(client.description) has no SEND_RESULT for message \(sequence)"
            }
        }
        return nil
    }

    /// Every message reported queued (result 0, or 3: queued, acks late) reached every destination (for a
    /// broadcast: every site its broker knew when it was sent), unless its source or destination broker crashed
    /// after it was sent, a receiver there was killed after it (lost on the way to the process), or a drop was
    /// counted for it.
    func checkDeliveries() {
        struct Slot: Hashable, Comparable {
            let source: Int32
            let site: Int32
            let group: String
            static func < (a: Slot, b: Slot) -> Bool { (a.source, a.site, a.group) < (b.source, b.site, b.group) }
        }
        var missing: [Slot: (count: Int, example: String)] = [:]
        for (key, messages) in ledger.sent.sorted(by: { $0.key < $1.key }) {
            for (offset, message) in messages.enumerated() {
                guard message.status == .ok || message.status == .ackTimeout else { continue }
                let destinations: [Int32]
                switch message.destination {
                case SiteID.broadcast: destinations = message.members
                case SiteID.master: destinations = []
                default: destinations = [message.destination]
                }
                for site in destinations where !faults.removedSites.contains(site) {
                    if excused(message, at: site) { continue }
                    let sequence = UInt64(offset + 1)
                    guard !ledger.wasDelivered(key: key, sequence: sequence, at: site) else { continue }
                    let slot = Slot(source: message.site, site: site, group: message.group)
                    missing[slot, default: (0, "message \(sequence) of producer \(key) to \(message.destination) at "
                        + "\(message.at / 1_000_000) ms")].count += 1
                }
            }
        }
        for slot in missing.keys.sorted() {
            let (count, example) = missing[slot]!
            // Drops counted for it: at the destination's delivery, or at the source when the destination restarted
            // before acknowledging it (a drop at a full queue is never reported queued: not counted here).
            let atDestination = broker(slot.site)?.core.deliveryDrops(group: slot.group) ?? 0
            let atSource = slot.source == slot.site ? 0 : broker(slot.source)?.core.restartDrops(to: slot.site) ?? 0
            if count > atDestination + atSource {
                return violation("\(count) messages from site \(slot.source) reported queued never reached site "
                    + "\(slot.site) in \(slot.group) (drops counted: \(atDestination) there, \(atSource) at site "
                    + "\(slot.source)), e.g. \(example); \(linkReport(slot.source, slot.site))")
            }
        }
    }

    private func excused(_ message: SimLedger.Sent, at site: Int32) -> Bool {
        if let crash = history.lastCrash[message.site], crash >= message.at { return true }
        if let crash = history.lastCrash[site], crash >= message.at { return true }
        if let kill = history.lastReceiverKill[SimHistory.key(site, message.group)], kill >= message.at { return true }
        return false
    }
}

extension Simulation {
    /// What both ends of a link counted (for a violation's report).
    func linkReport(_ source: Int32, _ site: Int32) -> String {
        guard let from = broker(source)?.core.stats(pid: 0, acceptFailures: 0).peers.first(where: { $0.siteID == site }),
              let to = broker(site)?.core.stats(pid: 0, acceptFailures: 0).peers.first(where: { $0.siteID == source })
        else { return "no link" }
        return "site \(source) sent \(from.messagesSent) (resent \(from.resent), dropped \(from.dropped), reconnects "
            + "\(from.reconnects)); site \(site) received \(to.messagesReceived) (duplicates \(to.duplicates))"
    }
}
