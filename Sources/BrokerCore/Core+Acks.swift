// Acks for PERMANENT messages, master announcements and site events.
//
// A receiver acknowledges the LSN up to which its site made another site's log durable (Berkeley DB's
// DB_REP_ISPERM for a message from that site); the broker tells that site alone (PEER_ACK), and each broker
// keeps, per group and per peer site, the highest LSN acknowledged. An ack never reaches a site whose log it
// is not about: after a partition, an old master must not count acks of the new master's log at LSNs its own
// diverging log also has. A local client's PERMANENT send
// with an LSN waits until its ack policy counts enough sites durable at or past that LSN, or its timeout
// passes. Acks are forgotten for a site whose link goes down and for a group whose master changes (a new
// master's log may be rolled back below LSNs acknowledged under the old one).
import BrokerWire

extension Core {
    /// Where a PERMANENT send's SEND_RESULT comes from: now (policy none, no LSN, or already met) or later.
    func awaitAcks(_ client: ClientSession, _ group: Group, sequence: UInt64, lsn: LSN) {
        let required = client.ackPolicy.requiredAcks(sites: membership.groupSize)
        if required == 0 || lsn == .zero || group.sitesDurable(at: lsn) >= required {
            if required > 0 { counters.permanentAcked += 1 }
            if required > 0 && lsn != .zero { group.ackWait.record(0, now: now) }
            client.permanentAcked += 1
            client.sendResult(sequence, .ok)
            return
        }
        group.pendingAcks.append(PendingAck(client: client, sequence: sequence, lsn: lsn, required: required,
                                            deadline: now + client.ackTimeoutNanoseconds, sentAt: now))
    }

    /// A local receiver's ack: tell the site whose log it is about (none when its link is down: that site's
    /// sends wait or time out, and it is told again by the next ack).
    func acknowledge(from client: ClientSession, _ ack: AckFrame) {
        guard let group = client.group, let link = membership.links[ack.siteID], let connection = link.connection else { return }
        PeerAckFrame(group: group.index, lsn: ack.lsn).append(to: link.control.buffer)
        connection.scheduleFlush()
    }

    /// A peer site's ack.
    func peerAcknowledged(_ frame: PeerAckFrame, on connection: PeerSession) throws(WireError) {
        guard let link = connection.link, let group = try boundGroup(link, frame.group, .peerAck, create: false) else {
            return  // no group here, so no PERMANENT send waits for this ack
        }
        counters.acksReceived += 1
        if frame.lsn > group.ackedLSN[link.index] { group.ackedLSN[link.index] = frame.lsn }
        guard !group.pendingAcks.isEmpty else { return }
        group.pendingAcks.removeAll { pending in
            guard group.sitesDurable(at: pending.lsn) >= pending.required else { return false }
            counters.permanentAcked += 1
            group.ackWait.record(now &- pending.sentAt, now: now)
            pending.client.permanentAcked += 1
            pending.client.sendResult(pending.sequence, .ok)
            return true
        }
    }

    /// Fails PERMANENT sends whose acks did not come in time (on each tick).
    func expirePendingAcks() {
        for group in groups.list where !group.pendingAcks.isEmpty {
            group.pendingAcks.removeAll { pending in
                guard now >= pending.deadline else { return false }
                counters.permanentAckFailures += 1
                pending.client.permanentFailed += 1
                // Which sites were durable at the LSN in time, and which were not.
                var acked: [Int32] = []
                var missing: [Int32] = []
                for link in membership.linkList where !link.removed {
                    if group.ackedLSN[link.index] >= pending.lsn { acked.append(link.siteID) } else { missing.append(link.siteID) }
                }
                pending.client.send(.sendResult, body: SendResultFrame(sequence: pending.sequence, status: .ackTimeout,
                                                                       acked: acked, missing: missing).body)
                return true
            }
        }
    }

    /// Drops a departing client's waiting sends.
    func forgetPendingAcks(of client: ClientSession) {
        client.group?.pendingAcks.removeAll { $0.client === client }
    }

    /// A local client says which site is master; peers are told.
    func announceMaster(from client: ClientSession, _ siteID: Int32) {
        guard let group = client.group else { return }
        setMaster(group, siteID, source: "client \(client.clientID)")
        let frame = group.masterFrame
        // A removed site is never linked again: nothing is queued for it.
        for link in membership.linkList where !link.removed { link.enqueueControl(frame) }
    }

    func peerAnnouncedMaster(_ frame: MasterFrame, on connection: PeerSession) throws(WireError) {
        guard let link = connection.link, let group = try boundGroup(link, frame.group, .peerMaster) else { return }
        setMaster(group, frame.siteID, source: "site \(link.siteID)")
    }

    private func setMaster(_ group: Group, _ siteID: Int32, source: String) {
        guard group.master != siteID else { return }
        group.master = siteID
        for index in group.ackedLSN.indices { group.ackedLSN[index] = .zero }
        logger.info("master announced", ["group": group.name, "master.site_id": "\(siteID)", "by": source])
    }

    // Site events tell a group's receiver what a direct connection to each site's receiver would: a site is up
    // in a group while its link is up and a client holds the group's receiver role there (PEER_RECEIVER). So
    // a site whose replication process died is down for its peers, though its broker lives on.

    /// A link went down: its acks are forgotten, and the receivers of the groups that had a receiver there
    /// hear that the site is down.
    func siteWentDown(_ link: PeerLink) {
        for group in groups.list { group.ackedLSN[link.index] = .zero }
        for name in link.receiverGroups.sorted() {
            groups.byName[name]?.receiver?.sendSiteEvent(SiteEventFrame(siteID: link.siteID, up: false))
        }
        link.receiverGroups.removeAll()
    }

    /// A peer's PEER_RECEIVER: a group gained or lost its receiver at that site; this site's receiver of the
    /// group hears the site come up or go down.
    func peerReceiver(_ frame: PeerReceiverFrame, on connection: PeerSession) throws(WireError) {
        guard let link = connection.link else { return }
        guard let name = link.remoteGroupNames[frame.group] else {
            throw .malformed(type: .peerReceiver, reason: "group index \(frame.group) was never bound")
        }
        setReceiver(of: name, at: link, present: frame.present)
    }

    func setReceiver(of name: String, at link: PeerLink, present: Bool) {
        let changed = present ? link.receiverGroups.insert(name).inserted : link.receiverGroups.remove(name) != nil
        guard changed else { return }
        groups.byName[name]?.receiver?.sendSiteEvent(SiteEventFrame(siteID: link.siteID, up: present))
    }

    /// Tells every connected peer when the group gained its first receiver or lost its last one.
    func announceReceiver(_ group: Group) {
        let present = group.receiver != nil
        guard present != group.receiverAnnounced, present || !config.mutations.contains(.receiverLossNotAnnounced) else {
            return
        }
        group.receiverAnnounced = present
        let frame = group.receiverFrame
        for link in membership.linkList where link.connection != nil { link.enqueueControl(frame) }
    }

    /// Gives a new receiver the state of every peer site in its group.
    func sendSiteStates(to client: ClientSession) {
        guard let group = client.group else { return }
        for link in membership.linkList {
            let up = link.connection != nil && link.receiverGroups.contains(group.name)
            client.sendSiteEvent(SiteEventFrame(siteID: link.siteID, up: up))
        }
    }
}
