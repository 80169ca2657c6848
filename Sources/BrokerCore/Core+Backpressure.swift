// Backpressure, per group, end to end and without drops (PROTOCOL.md, "Flow control"), and credit back to the
// peers' flows as this site's receivers drain.
import BrokerWire

extension Core {
    /// A group is congested while one of its flows on a connected peer link, or its local receiver's queue,
    /// holds more than the mark; its local producers pause then, and only they: other groups keep flowing. A
    /// flow's queue grows when the peer withholds credit, which it does while that group's receiver there is
    /// behind, so a slow receiver stops its own group's senders at their sites. Clients holding a receiver role are
    /// never paused: what they send (acks, answers, sends from a receive callback) is often what lets a queue
    /// drain. A peer that is down pauses nobody: messages for it are queued, then dropped and counted when its
    /// queue is full. Groups get on the list as a queue passes the mark (`congest`); each pass checks the list.
    public func applyBackpressure() {
        var position = 0
        while position < groups.congested.count {
            let group = groups.congested[position]
            if isOverMark(group) {
                if !group.producersPaused { setProducersPaused(group, true) }
                position += 1
            } else {
                group.congested = false
                // Also when the producers were not paused yet: one may hold frames it read before the mark.
                if group.producersPaused || group.producerHoldsInput { setProducersPaused(group, false) }
                groups.congested.remove(at: position)
            }
        }
    }

    /// Whether some group is congested (its paused producers are resumed by a queue draining, which no event
    /// announces: a parked shell looks again soon).
    public var hasCongestion: Bool { !groups.congested.isEmpty }

    /// A queue of `group` passed the mark: its producers stop taking records and frames at once (the rings
    /// phase and a socket producer's parsing check the flag), and the next pass pauses their sockets. Callers
    /// pass a peer's queue only while its link is connected, as `isOverMark` counts it: a down site's queue over
    /// the mark congested the group at every message, and the next pass let it go again, so a group whose
    /// broadcasts queued for a dead site moved about a ring batch per pass (10x slower; the scale bench found it).
    @inline(__always)
    func congest(_ group: Group) {
        guard !group.congested else { return }
        group.congested = true
        groups.congested.append(group)
    }

    func isOverMark(_ group: Group) -> Bool {
        if let receiver = group.receiver, receiver.output.byteCount > backpressureBytes { return true }
        for link in membership.linkList where link.connection != nil && link.queuedBytes(of: group) > backpressureBytes {
            return true
        }
        return false
    }

    /// Pauses or resumes the sockets of the group's producers without rings. A ring client's messages come in
    /// its ring, which the rings phase leaves alone while the group is congested; its socket, which carries only
    /// control frames (acks, master announcements, channel replies), is always read.
    private func setProducersPaused(_ group: Group, _ paused: Bool) {
        group.producersPaused = paused
        if !paused { group.producerHoldsInput = false }
        for client in clients.byID.values.sorted(by: { $0.clientID < $1.clientID })
        where client.group === group && client.roleState != .receiver && client.rings == nil && !client.awaitingWelcome {
            client.setReadingPaused(paused)
        }
    }

    /// Sends the credit that is due on every link: the bytes of each peer flow handed on here, once that
    /// flow's group has room again (its receiver, or its channel's subscribers, at or under the mark).
    public func returnCredits() {
        for link in membership.linkList where !link.credit.due.isEmpty {
            guard link.connection != nil else { continue }
            var position = 0
            while position < link.credit.due.count {
                let id = link.credit.due[position]
                let trafficClass: TrafficClass = id & 1 == 0 ? .replication : .channel
                if let group = link.remoteGroups[UInt32(id >> 1)], deliveryBacklog(group, trafficClass) > backpressureBytes {
                    position += 1
                    continue
                }
                let owed = link.credit.take(dueAt: position)
                var left = owed.bytes
                while left > 0 {
                    let bytes = min(left, Int(UInt32.max))
                    CreditFrame(group: UInt32(id >> 1), trafficClass: trafficClass, bytes: UInt32(bytes), acked: owed.acked)
                        .append(to: link.control.buffer)
                    left -= bytes
                }
                link.connection?.scheduleFlush()
            }
        }
    }

    /// Bytes of `group`'s `trafficClass` waiting here for local clients: its receiver's queue (a group without
    /// a receiver keeps its own bounded queue, and does not hold credit back), or its subscribers' largest.
    func deliveryBacklog(_ group: Group, _ trafficClass: TrafficClass) -> Int {
        switch trafficClass {
        case .replication:
            return group.receiver?.output.byteCount ?? 0
        case .channel:
            var largest = 0
            for subscribers in group.channels.values {
                for client in subscribers.clients { largest = max(largest, client.socketQueue.byteCount) }
            }
            return largest
        }
    }
}
