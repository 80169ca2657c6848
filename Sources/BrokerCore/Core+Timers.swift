// The core's phases that are not an event on one connection: the rings phase (every client's to-broker ring
// drained a budget per pass, its to-client ring filled) and the timers (heartbeats, liveness, dials, ack
// timeouts, group release, handshake deadlines), both at the time the shell gave.
import BrokerWire

extension Core {
    /// Before the shell sleeps: every ring of a client whose records would be taken says its consumer sleeps,
    /// so that a producer rings the broker's doorbell. False (and nothing said) when one has records already.
    public func prepareRingsToSleep() -> Bool {
        for client in clients.ringClients {
            // A paused producer's records wait for its group's queues to drain, which wakes the loop (a socket
            // event, or the shell's short look while `hasCongestion`): they do not keep it awake.
            if client.roleState != .receiver, client.$group?.with({ $0.congested }) == true { continue }
            guard let rings = client.rings, rings.reader.prepareToSleep() else {
                wakeRings()
                return false
            }
        }
        return true
    }

    /// After the shell slept: every ring is read again without doorbells.
    public func wakeRings() {
        for client in clients.ringClients { client.rings?.reader.awake() }
    }

    /// Runs the timers when they are due.
    public func runTimers() {
        guard now >= nextTickAt else { return }
        tick()
        nextTickAt = now + tickNanoseconds
    }

    /// Peer heartbeats and liveness, dialling, ack timeouts, group release, handshake deadlines.
    func tick() {
        releaseIdleGroups()
        dialJoinTargets()
        let elapsed = lastTickAt == 0 ? 0 : now &- lastTickAt
        lastTickAt = now
        for link in membership.linkList where !link.removed {
            if let connection = link.connection {
                // What is owed short of a batch goes back too, so the peer lets its acknowledged frames go.
                link.credit.dueAll()
                let heard = link.heardSinceTick
                if heard {
                    link.heardSinceTick = false
                    link.lastHeard = now
                }
                if !link.liveness.tick(heard: heard, elapsed: elapsed, interval: heartbeatNanoseconds) {
                    connection.close(reason: "no traffic for \(link.liveness.silentNanoseconds / 1_000_000) ms of this "
                        + "broker's running time (three heartbeats)")
                } else if now &- link.lastProbeAt >= heartbeatNanoseconds {
                    // Every interval, busy or idle, and also while every flow waits for credit: the link is alive
                    // even when no data may move. A probe whose echo never came is given up for the next; a link
                    // at protocol 5 gets the empty heartbeat that version knows.
                    link.lastProbeAt = now
                    if link.protocolVersion >= 6 {
                        link.probeSentAt = now
                        link.enqueueControl(FrameParser.encode(.heartbeat, body: HeartbeatFrame(kind: .probe, timestamp: now).body))
                    } else {
                        link.enqueueControl(FrameParser.encode(.heartbeat, body: []))
                    }
                    link.lastSent = now
                }
                // A site that dialled in told us its address: one dial of our own proves it (the HELLO on it
                // says who answers) before it is stored; the arbiter then drops that spare connection.
                if link.address?.verified == false, link.dialing == nil, now >= link.nextDialAt { dial(link) }
            } else if link.dialing == nil, link.address != nil, now >= link.nextDialAt {
                dial(link)
            }
        }
        expirePendingAcks()
        if trimMemoryAt != 0 && now >= trimMemoryAt {
            trimMemoryAt = 0
            // Clients' buffers (hundreds of KiB each) go back to the system once they have left; glibc keeps
            // freed heap memory otherwise, and a broker that saw a burst of clients would keep its peak.
            act(.trimMemory)
        }
        for connection in membership.handshaking where now > connection.deadline {
            connection.close(reason: "handshake with \(connection.peerDescription) timed out")
        }
    }

    /// A peer's heartbeat probe is echoed; the echo of this broker's last probe is a round trip.
    func heartbeat(_ frame: HeartbeatFrame, on link: PeerLink) {
        switch frame.kind {
        case .probe:
            link.enqueueControl(FrameParser.encode(.heartbeat, body: HeartbeatFrame(kind: .echo, timestamp: frame.timestamp).body))
        case .echo:
            guard frame.timestamp == link.probeSentAt, link.probeSentAt != 0, now >= frame.timestamp else { return }
            link.roundTrips.record(now - frame.timestamp, now: now)
            link.probeSentAt = 0
        }
    }

    /// Bytes queued for connected peers (the shell's shutdown waits for them, bounded).
    public var queuedForConnectedPeers: Int {
        membership.linkList.reduce(0) { $0 + ($1.connection != nil ? $1.queuedBytes : 0) }
    }

    /// Bytes queued for peers, and of those the bytes sent and not yet acknowledged.
    public var queuedForPeers: (queued: Int, unacknowledged: Int) {
        let queued = membership.linkList.reduce(0) { $0 + $1.queuedBytes }
        let unacked = membership.linkList.reduce(0) { total, link in
            total + link.flows.reduce(0) { $0 + ($1?.unackedBytes ?? 0) }
        }
        return (queued, unacked)
    }
}
