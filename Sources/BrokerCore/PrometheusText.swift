// The stats document in the Prometheus text exposition format, version 0.0.4: what `repbroker stats
// --prometheus` prints and `repbrokerd --metrics-listen` serves at /metrics. Names have the repbroker_
// prefix, counters end in _total, units are seconds and bytes. Labels are bounded by configuration: the peer
// site, the group (at most --max-groups), the traffic class, and for clients the client name and transport
// (clients with the same group, name and transport are summed: a client id or pid would be a new series per
// connection). Label values are escaped as the format asks (backslash, quote, line feed).

extension BrokerStats {
    public var prometheusText: String {
        var out = PrometheusWriter()
        out.gauge("repbroker_uptime_seconds", "Time since the broker started.", [("", Double(uptimeMilliseconds) / 1000)])
        out.gauge("repbroker_site_id", "This broker's site id.", [("", Double(siteID))])

        func perPeer(_ value: (PeerStats) -> Double) -> [(String, Double)] {
            peers.map { (label(["peer": "\($0.siteID)"]), value($0)) }
        }
        out.gauge("repbroker_peer_up", "1 while the link to the peer site is connected.",
                  perPeer { $0.state == .connected ? 1 : 0 })
        out.counter("repbroker_peer_sent_messages_total", "Messages queued for the peer site.", perPeer { Double($0.messagesSent) })
        out.counter("repbroker_peer_sent_bytes_total", "Payload bytes (control + rec) queued for the peer site.",
                    perPeer { Double($0.bytesSent) })
        out.counter("repbroker_peer_received_messages_total", "Messages received from the peer site.",
                    perPeer { Double($0.messagesReceived) })
        out.counter("repbroker_peer_received_bytes_total", "Payload bytes received from the peer site.",
                    perPeer { Double($0.bytesReceived) })
        out.gauge("repbroker_peer_queued_bytes", "Bytes waiting to be sent to the peer site.", perPeer { Double($0.queuedBytes) })
        out.counter("repbroker_peer_dropped_messages_total", "Messages for the peer site dropped (full queue, peer restart).",
                    perPeer { Double($0.dropped) })
        out.counter("repbroker_peer_refused_messages_total", "PERMANENT messages refused at the peer site's full queue.",
                    perPeer { Double($0.refused) })
        out.counter("repbroker_peer_reconnects_total", "Times the link to the peer site was made again.",
                    perPeer { Double($0.reconnects) })
        out.counter("repbroker_peer_resent_frames_total", "Frames sent again on a new connection, unacknowledged on the old.",
                    perPeer { Double($0.resent) })
        out.counter("repbroker_peer_duplicate_frames_total", "Frames the peer sent again that were handled already.",
                    perPeer { Double($0.duplicates) })
        out.gauge("repbroker_peer_last_heard_seconds", "Time since bytes last came from the peer site.",
                  peers.compactMap { p in p.millisecondsSinceHeard.map { (label(["peer": "\(p.siteID)"]), Double($0) / 1000) } })
        out.histogram("repbroker_peer_rtt_seconds", "Round trips of heartbeat probes to the peer site.",
                      peers.compactMap { p in p.rtt.map { (label(["peer": "\(p.siteID)"]), $0) } })
        out.histogram("repbroker_peer_time_queued_seconds",
                      "Time from a message's enqueue for the peer site to its write to the socket (sampled).",
                      peers.compactMap { p in p.timeQueued.map { (label(["peer": "\(p.siteID)"]), $0) } })

        let flows = peers.flatMap { p in p.flows.map { (label(["peer": "\(p.siteID)", "group": $0.group, "class": $0.trafficClass]), $0) } }
        out.gauge("repbroker_flow_queued_bytes", "Frame bytes of the flow waiting to be sent.", flows.map { ($0.0, Double($0.1.queuedBytes)) })
        out.gauge("repbroker_flow_unacked_bytes", "Frame bytes of the flow sent and not yet acknowledged.",
                  flows.map { ($0.0, Double($0.1.unackedBytes)) })
        out.counter("repbroker_flow_sent_bytes_total", "Frame bytes of the flow sent the first time.",
                    flows.map { ($0.0, Double($0.1.bytesSent)) })
        out.counter("repbroker_flow_received_bytes_total", "Frame bytes of the flow received.",
                    flows.map { ($0.0, Double($0.1.bytesReceived)) })
        out.counter("repbroker_flow_stalls_total", "Times the flow's window ran out with frames queued.",
                    flows.map { ($0.0, Double($0.1.stalls)) })

        func perGroup(_ value: (GroupStats) -> Double) -> [(String, Double)] {
            groups.map { (label(["group": $0.name]), value($0)) }
        }
        out.gauge("repbroker_group_master_site", "The group's master site as last announced (0: none known).",
                  perGroup { Double($0.master) })
        out.gauge("repbroker_group_receiver", "1 while a local client holds the group's receiver role.",
                  perGroup { $0.receiverClient == nil ? 0 : 1 })
        out.counter("repbroker_group_delivered_messages_total", "Messages delivered to the group's local receiver.",
                    perGroup { Double($0.delivered) })
        out.gauge("repbroker_group_pending_messages", "Messages waiting for a receiver.", perGroup { Double($0.pendingMessages) })
        out.counter("repbroker_group_dropped_messages_total", "Messages of the group dropped at this broker.",
                    perGroup { Double($0.dropped) })
        out.gauge("repbroker_group_waiting_acks", "PERMANENT sends waiting for acks.", perGroup { Double($0.waitingForAcks) })
        out.histogram("repbroker_group_ack_wait_seconds",
                      "Time from a PERMANENT send to the acks its policy asks for (sends that time out are not counted).",
                      groups.compactMap { g in g.ackWait.map { (label(["group": g.name]), $0) } })

        // Clients summed by group, name and transport.
        var keys: [String] = []
        var sums: [String: [Double]] = [:]
        for c in clients {
            let key = label(["group": c.group, "client": c.name, "transport": c.transport])
            let values = [1, Double(c.messagesSent), Double(c.bytesSent), Double(c.messagesReceived), Double(c.bytesReceived),
                          Double(c.queuedBytes), Double(c.dropped), Double(c.permanentAcked), Double(c.permanentFailed)]
            if let sum = sums[key] {
                sums[key] = zip(sum, values).map { $0 + $1 }
            } else {
                keys.append(key)
                sums[key] = values
            }
        }
        func perClient(_ column: Int) -> [(String, Double)] { keys.map { ($0, sums[$0]![column]) } }
        out.gauge("repbroker_clients", "Local clients connected, by group, name and transport.", perClient(0))
        out.counter("repbroker_client_sent_messages_total", "Messages the connected clients sent.", perClient(1))
        out.counter("repbroker_client_sent_bytes_total", "Payload bytes the connected clients sent.", perClient(2))
        out.counter("repbroker_client_received_messages_total", "Messages delivered to the connected clients.", perClient(3))
        out.counter("repbroker_client_received_bytes_total", "Payload bytes delivered to the connected clients.", perClient(4))
        out.gauge("repbroker_client_queued_bytes", "Bytes waiting for the connected clients.", perClient(5))
        out.counter("repbroker_client_dropped_messages_total", "Messages for the connected clients dropped.", perClient(6))
        out.counter("repbroker_client_permanent_acked_total", "PERMANENT sends of the connected clients that met their policy.",
                    perClient(7))
        out.counter("repbroker_client_permanent_failed_total", "PERMANENT sends of the connected clients that failed.",
                    perClient(8))

        let t = totals
        let totalCounters: [(String, String, Int)] = [
            ("repbroker_routed_messages_total", "Messages routed from local clients.", t.messagesRouted),
            ("repbroker_delivered_messages_total", "Messages delivered to local receivers.", t.messagesDelivered),
            ("repbroker_dropped_messages_total", "Messages dropped (peers and groups).", t.dropped),
            ("repbroker_refused_messages_total", "PERMANENT messages refused at a full peer queue.", t.refused),
            ("repbroker_unroutable_messages_total", "Messages for no known site or master.", t.unroutable),
            ("repbroker_misrouted_messages_total", "Messages from peers for a site other than this one.", t.misrouted),
            ("repbroker_bad_frames_total", "Malformed frames; each closed its connection.", t.badFrames),
            ("repbroker_tls_failures_total", "Peer connections refused for their TLS.", t.tlsFailures),
            ("repbroker_clients_refused_total", "Local clients refused (limits, credentials, names).", t.clientsRefused),
            ("repbroker_accept_failures_total", "accept() failures on any listener.", t.acceptFailures),
            ("repbroker_groups_refused_total", "Groups refused for want of a slot.", t.groupsRefused),
            ("repbroker_groups_released_total", "Groups released after their grace period.", t.groupsReleased),
            ("repbroker_acks_received_total", "Acks received from peer sites.", t.acksReceived),
            ("repbroker_permanent_acked_total", "PERMANENT sends that met their ack policy.", t.permanentAcked),
            ("repbroker_permanent_ack_failures_total", "PERMANENT sends whose acks did not come in time.", t.permanentAckFailures),
            ("repbroker_channel_messages_total", "Channel messages routed.", t.channelMessages),
            ("repbroker_channel_requests_total", "Channel requests routed.", t.channelRequests),
            ("repbroker_channel_replies_total", "Channel replies routed.", t.channelReplies),
            ("repbroker_channel_no_subscriber_total", "Channel messages with no subscriber.", t.channelNoSubscriber),
            ("repbroker_channel_timeouts_total", "Channel requests that timed out.", t.channelTimeouts),
        ]
        for (name, help, value) in totalCounters { out.counter(name, help, [("", Double(value))]) }
        out.gauge("repbroker_peers_connected", "Peer links connected.", [("", Double(t.peersConnected))])
        out.gauge("repbroker_clients_connected", "Local clients connected.", [("", Double(t.clientsConnected))])
        return out.text
    }
}

/// `{key="value",...}` with values escaped as the exposition format asks; keys in the order given.
func label(_ pairs: KeyValuePairs<String, String>) -> String {
    "{" + pairs.map { key, value in
        var escaped = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return "\(key)=\"\(escaped)\""
    }.joined(separator: ",") + "}"
}

struct PrometheusWriter {
    var text = ""

    mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: String, _ value: Double) {
        text += name + (labels == "{}" ? "" : labels) + " " + Self.number(value) + "\n"
    }

    mutating func counter(_ name: String, _ help: String, _ samples: [(String, Double)]) {
        guard !samples.isEmpty else { return }
        family(name, "counter", help)
        for (labels, value) in samples { sample(name, labels, value) }
    }

    mutating func gauge(_ name: String, _ help: String, _ samples: [(String, Double)]) {
        guard !samples.isEmpty else { return }
        family(name, "gauge", help)
        for (labels, value) in samples { sample(name, labels, value) }
    }

    /// Cumulative buckets (le in seconds), +Inf, sum and count.
    mutating func histogram(_ name: String, _ help: String, _ samples: [(String, HistogramStats)]) {
        guard !samples.isEmpty else { return }
        family(name, "histogram", help)
        for (labels, histogram) in samples {
            let inner = labels == "{}" ? "" : String(labels.dropFirst().dropLast()) + ","
            var cumulative = 0
            for (index, bound) in LatencyHistogram.boundsNanoseconds.enumerated() {
                cumulative += index < histogram.buckets.count ? histogram.buckets[index] : 0
                text += "\(name)_bucket{\(inner)le=\"\(Self.number(Double(bound) / 1e9))\"} \(cumulative)\n"
            }
            text += "\(name)_bucket{\(inner)le=\"+Inf\"} \(histogram.count)\n"
            sample(name + "_sum", labels, histogram.sumSeconds)
            sample(name + "_count", labels, Double(histogram.count))
        }
    }

    /// Integers without a fraction; other values as Swift prints a Double (shortest round-trip form).
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
