// The core's own invariants, checked from outside (the simulator calls this after every step; a test may
// too). Each is cheap: a walk over links, flows, groups and clients, no allocation unless one is broken.
import BrokerWire

extension Core {
    /// What is wrong with the core's state now: empty when every invariant holds.
    ///
    /// - Credit: no flow of this broker sends beyond the window its peer granted (a window may go below zero
    ///   by one frame at most: a frame is sent while the window is above zero), and credit never returns more
    ///   than was sent (the window never passes the grant). No peer flow has sent this broker more than the
    ///   window it granted (bytes received and not yet credited back).
    /// - Queues: each peer queue, client queue and group's inbound queue stays within its limit (one frame may
    ///   pass it: a queue that is empty takes any frame up to the message limit; a new receiver takes the
    ///   group's inbound queue whole).
    /// - Backpressure: no producer of a group whose producers are paused is read on by its socket.
    /// - Receivers: a group's receiver is one client, registered with it, holding the receiver role, and not a
    ///   standby; every client holding the role is its group's receiver.
    public func audit() -> [String] {
        var problems: [String] = []
        let largestFrame = Wire.frameHeaderSize + Wire.messageHeaderSize + config.maxMessageBytes + 64
        for link in membership.linkList {
            for case let flow? in link.flows {
                if flow.window > link.peerWindow {
                    problems.append("site \(config.siteID): flow \(flow.group.name)/\(flow.trafficClass) to site "
                        + "\(link.siteID) has window \(flow.window) above the \(link.peerWindow) granted")
                }
                if flow.window < -largestFrame {
                    problems.append("site \(config.siteID): flow \(flow.group.name)/\(flow.trafficClass) to site "
                        + "\(link.siteID) sent \(-flow.window) bytes beyond its credit")
                }
            }
            if link.connection != nil {
                for id in link.credit.owing(limit: config.flowWindowBytes + largestFrame) {
                    problems.append("site \(config.siteID): site \(link.siteID) sent flow \(id) "
                        + "\(link.credit.owed(flow: id)) bytes unacknowledged, beyond the window of \(config.flowWindowBytes)")
                }
            }
            // The wire holds copies of frames its flows keep until acknowledged: up to its target and a frame.
            if link.queuedBytes > link.queueLimit + 2 * largestFrame + PeerLink.wireTarget {
                problems.append("site \(config.siteID): queue for site \(link.siteID) holds \(link.queuedBytes) bytes, "
                    + "limit \(link.queueLimit)")
            }
        }
        for group in groups.list {
            if group.pending.byteCount > config.inboundQueueBytes + largestFrame {
                problems.append("site \(config.siteID): group \(group.name) holds \(group.pending.byteCount) bytes "
                    + "for a receiver, limit \(config.inboundQueueBytes)")
            }
            if let receiver = group.receiver {
                if receiver.isClosed || receiver.group !== group || receiver.roleState != .receiver
                    || group.standbys.contains(where: { $0 === receiver }) {
                    problems.append("site \(config.siteID): group \(group.name)'s receiver is client "
                        + "\(receiver.clientID), which does not hold the role (\(receiver.roleState))")
                }
            }
        }
        for client in clients.byID.values where client.roleState == .receiver {
            if client.group?.receiver !== client {
                problems.append("site \(config.siteID): client \(client.clientID) holds the receiver role of "
                    + "\(client.group?.name ?? "no group") but is not its receiver")
            }
        }
        for client in clients.byID.values where client.rings == nil && !client.awaitingWelcome && client.isRegistered
            && client.roleState != .receiver && client.group?.producersPaused == true && !client.readingPaused {
            problems.append("site \(config.siteID): producer client \(client.clientID) of congested group "
                + "\(client.group?.name ?? "") is read on (its socket should be paused)")
        }
        // A new receiver takes the group's inbound queue at once, whatever its own limit; then it takes more
        // only under its limit. Site events (one per site) are not limited.
        let clientLimit = max(config.clientQueueBytes, config.inboundQueueBytes) + largestFrame + 64 * Wire.maxMembers
        for client in clients.byID.values where client.output.byteCount > clientLimit {
            problems.append("site \(config.siteID): client \(client.clientID) has \(client.output.byteCount) bytes "
                + "queued, limit \(client.outputLimit) (inbound queue limit \(config.inboundQueueBytes))")
        }
        return problems.sorted()
    }
}

extension Core {
    /// Bytes waiting here for local clients (their queues, and groups' queues waiting for a receiver), and
    /// whether a client's to-broker ring still holds records.
    public var queuedForClients: (bytes: Int, ringRecords: Bool) {
        let bytes = clients.byID.values.reduce(0) { $0 + $1.output.byteCount + ($1.rings?.socketOutput.byteCount ?? 0) }
            + groups.list.reduce(0) { $0 + $1.pending.byteCount }
        return (bytes, clients.ringClients.contains { $0.hasRingInput })
    }

    /// Sites whose link is up, in order.
    public var linkedSites: [Int32] {
        membership.linkList.filter { $0.connection != nil }.map(\.siteID).sorted()
    }

    /// Sites this broker knows and has not removed, in order.
    public var memberSites: [Int32] {
        membership.linkList.filter { !$0.removed }.map(\.siteID).sorted()
    }

    /// Whether a client holds the receiver role of `group` here.
    public func hasReceiver(group name: String) -> Bool { groups.byName[name]?.receiver != nil }

    /// Sites counted for ack policies: this one and every member not removed.
    public var groupSize: Int { membership.groupSize }

    /// Messages this broker counted as not queued: dropped or refused at a peer queue, dropped at delivery
    /// here, or unroutable. Every SEND_RESULT other than 0 and 3 is one of these.
    public var countedDrops: Int {
        membership.linkList.reduce(0) { $0 + $1.dropped + $1.refused } + groups.list.reduce(0) { $0 + $1.dropped }
            + counters.unroutable
    }

    /// Messages for `site` reported queued and dropped here after: sent to an incarnation of it that restarted
    /// before acknowledging them. (A message dropped at a full queue is never reported queued.)
    public func restartDrops(to site: Int32) -> Int { membership.links[site]?.droppedAtRestart ?? 0 }

    /// Messages of `group` dropped at delivery here (no receiver and the inbound queue full, or its receiver's
    /// queue full).
    public func deliveryDrops(group name: String) -> Int { groups.byName[name]?.dropped ?? 0 }
}
