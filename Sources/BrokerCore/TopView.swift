// What `repbroker top` shows, from two stats snapshots `seconds` apart: per peer its state, heartbeat round
// trip (p50 over the last minute), bytes queued, and messages per second out and in; per group messages
// delivered per second, PERMANENT sends waiting for acks and their ack wait p99; per client messages per
// second each way and its rings' fill. Rates need the previous snapshot: without one they show "-".

extension BrokerStats {
    public func topLines(previous: BrokerStats?, seconds: Double) -> [String] {
        func rate(_ now: Int, _ before: Int?) -> String {
            guard let before, seconds > 0, now >= before else { return "-" }
            let perSecond = Double(now - before) / seconds
            return perSecond >= 10_000 ? "\(Int(perSecond / 1000))k" : "\(Int(perSecond.rounded()))"
        }
        var lines = ["repbroker top  site \(siteID)  pid \(pid)  uptime \(formatDuration(uptimeMilliseconds))  "
            + "peers up \(totals.peersConnected) of \(peers.count)  clients \(clients.count)  "
            + "drops \(totals.dropped)  perm failed \(totals.permanentAckFailures)", ""]
        let oldPeers = Dictionary(previous?.peers.map { ($0.siteID, $0) } ?? [], uniquingKeysWith: { $1 })
        lines += render([["PEER", "state", "rtt_p50", "queued", "out/s", "in/s", "dropped", "reconnects"]]
            + peers.map { p in
                let old = oldPeers[p.siteID]
                return ["\(p.siteID)", p.state.rawValue, formatSeconds(p.rtt?.lastMinute.p50Seconds), "\(p.queuedBytes)",
                        rate(p.messagesSent, old?.messagesSent), rate(p.messagesReceived, old?.messagesReceived),
                        "\(p.dropped)", "\(p.reconnects)"]
            }).split(separator: "\n").map(String.init)
        lines.append("")
        let oldGroups = Dictionary(previous?.groups.map { ($0.name, $0) } ?? [], uniquingKeysWith: { $1 })
        lines += render([["GROUP", "master", "delivered/s", "waiting_acks", "ack_wait_p99", "dropped"]]
            + groups.map { g in
                [g.name, g.master == 0 ? "-" : "\(g.master)", rate(g.delivered, oldGroups[g.name]?.delivered),
                 "\(g.waitingForAcks)", formatSeconds(g.ackWait?.lastMinute.p99Seconds), "\(g.dropped)"]
            }).split(separator: "\n").map(String.init)
        lines.append("")
        let oldClients = Dictionary(previous?.clients.map { ($0.id, $0) } ?? [], uniquingKeysWith: { $1 })
        lines += render([["CLIENT", "name", "group", "transport", "sent/s", "recv/s", "ring_fill", "dropped"]]
            + clients.map { c in
                let old = oldClients[c.id]
                return ["\(c.id)", c.name.isEmpty ? "-" : c.name, c.group, c.transport, rate(c.messagesSent, old?.messagesSent),
                        rate(c.messagesReceived, old?.messagesReceived), ringFill(c), "\(c.dropped)"]
            }).split(separator: "\n").map(String.init)
        return lines
    }
}
