// Renders BrokerStats as the human table `repbroker stats` prints.

extension BrokerStats {
    public var table: String {
        var out = "site \(siteID)  pid \(pid)  uptime \(formatDuration(uptimeMilliseconds))\n"
        out += "\nPEERS\n"
        out += render([["site", "address", "origin", "state", "msgs_out", "bytes_out", "msgs_in", "bytes_in", "queued",
                        "dropped", "refused", "reconnects", "resent", "duplicates", "heard_ms", "tls"]]
            + peers.map { p in
                ["\(p.siteID)", p.address, p.origin.rawValue, p.state.rawValue, "\(p.messagesSent)", "\(p.bytesSent)",
                 "\(p.messagesReceived)", "\(p.bytesReceived)", "\(p.queuedBytes)", "\(p.dropped)", "\(p.refused)",
                 "\(p.reconnects)", "\(p.resent)", "\(p.duplicates)", p.millisecondsSinceHeard.map { "\($0)" } ?? "-",
                 p.tls ?? "-"]
            })
        let flowRows = peers.flatMap { p in
            p.flows.map { f in
                ["\(p.siteID)", f.group, f.trafficClass, "\(f.queuedBytes)", "\(f.unackedBytes)", f.window.map { "\($0)" } ?? "-", "\(f.owed)",
                 f.paused ? "yes" : "no", "\(f.framesSent)", "\(f.bytesSent)", "\(f.framesReceived)", "\(f.bytesReceived)",
                 "\(f.stalls)"]
            }
        }
        if !flowRows.isEmpty {
            out += "\nFLOWS (per peer, group and class; frame bytes)\n"
            out += render([["site", "group", "class", "queued", "unacked", "window", "owed", "paused", "frames_out", "bytes_out",
                            "frames_in", "bytes_in", "stalls"]] + flowRows)
        }
        out += "\nCLIENTS\n"
        out += render([["id", "pid", "name", "group", "roles", "transport", "msgs_sent", "bytes_sent", "msgs_recv",
                        "bytes_recv", "queued", "dropped", "paused", "ring_fill"]]
            + clients.map { c in
                ["\(c.id)", "\(c.pid)", c.name.isEmpty ? "-" : c.name, c.group, c.roles.joined(separator: ","),
                 c.transport, "\(c.messagesSent)", "\(c.bytesSent)", "\(c.messagesReceived)", "\(c.bytesReceived)",
                 "\(c.queuedBytes)", "\(c.dropped)", c.paused ? "yes" : "no", ringFill(c)]
            })
        out += "\nGROUPS\n"
        out += render([["group", "master", "receiver", "standbys", "delivered", "pending", "dropped", "waiting_acks"]]
            + groups.map { g in
                [g.name, g.master == 0 ? "-" : "\(g.master)", g.receiverClient.map { "\($0)" } ?? "-", "\(g.standbys)",
                 "\(g.delivered)", "\(g.pendingMessages)", "\(g.dropped)", "\(g.waitingForAcks)"]
            })
        out += "\nLATENCY (last minute: p50 / p99 / max, and count)\n"
        out += render([["what", "of", "p50", "p99", "max", "count"]]
            + peers.flatMap { p in
                [latencyRow("rtt", "site \(p.siteID)", p.rtt), latencyRow("time_queued", "site \(p.siteID)", p.timeQueued)]
            }
            + groups.map { g in latencyRow("ack_wait", g.name, g.ackWait) })
        out += "\nTOTALS\n"
        let t = totals
        out += render([
            ["routed", "to_peers", "from_peers", "delivered", "dropped", "refused", "unroutable", "misrouted",
             "bad_frames", "tls_failures", "clients", "clients_refused", "accept_failures",
             "groups_refused", "groups_released", "peers_up", "acks_in", "perm_acked", "perm_failed", "ch_msgs", "ch_requests",
             "ch_replies", "ch_no_subscriber", "ch_timeouts"],
            ["\(t.messagesRouted)", "\(t.messagesSentToPeers)", "\(t.messagesReceivedFromPeers)",
             "\(t.messagesDelivered)", "\(t.dropped)", "\(t.refused)", "\(t.unroutable)", "\(t.misrouted)",
             "\(t.badFrames)", "\(t.tlsFailures)", "\(t.clientsConnected)", "\(t.clientsRefused)", "\(t.acceptFailures)",
             "\(t.groupsRefused)", "\(t.groupsReleased)", "\(t.peersConnected)", "\(t.acksReceived)",
             "\(t.permanentAcked)", "\(t.permanentAckFailures)", "\(t.channelMessages)", "\(t.channelRequests)",
             "\(t.channelReplies)", "\(t.channelNoSubscriber)", "\(t.channelTimeouts)"],
        ])
        return out
    }
}

/// Left-aligned columns separated by two spaces; every cell escaped (names come from clients and peers).
public func render(_ raw: [[String]]) -> String {
    let rows = raw.map { $0.map { TerminalText.escaped($0) } }
    guard let header = rows.first else { return "" }
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    return rows.map { row in
        row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
        }.joined(separator: "  ")
    }.joined(separator: "\n") + "\n"
}

func formatDuration(_ milliseconds: UInt64) -> String {
    let seconds = milliseconds / 1000
    if seconds < 60 { return "\(seconds).\(milliseconds % 1000 / 100)s" }
    if seconds < 3600 { return "\(seconds / 60)m\(seconds % 60)s" }
    return "\(seconds / 3600)h\(seconds / 60 % 60)m"
}

/// "to-broker/to-client of ring" in percent, or "-" for socket clients.
func ringFill(_ client: ClientStats) -> String {
    guard let size = client.ringBytes, size > 0 else { return "-" }
    let up = (client.ringToBrokerUsed ?? 0) * 100 / size
    let down = (client.ringToClientUsed ?? 0) * 100 / size
    return "\(up)%/\(down)% of \(size)"
}

/// One latency row: the histogram's last minute, or dashes.
func latencyRow(_ what: String, _ of: String, _ histogram: HistogramStats?) -> [String] {
    let minute = histogram?.lastMinute
    return [what, of, formatSeconds(minute?.p50Seconds), formatSeconds(minute?.p99Seconds), formatSeconds(minute?.maxSeconds),
            "\(minute?.count ?? 0)"]
}

/// 83us, 1.25ms, 2.50s; "-" for none.
public func formatSeconds(_ seconds: Double?) -> String {
    guard let seconds else { return "-" }
    if seconds < 0.001 { return "\(Int((seconds * 1e6).rounded()))us" }
    func twoDecimals(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
    if seconds < 1 { return twoDecimals(seconds * 1000) + "ms" }
    return twoDecimals(seconds) + "s"
}
