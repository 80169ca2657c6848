// Group slots: a group is made on first use (a local REGISTER, or a peer's frame that needs it: MESSAGE,
// CHANNEL, PEER_MASTER; a GROUP_BIND only names the peer's index, so idle groups do not echo), takes the lowest
// free index for its GROUP_BIND and MESSAGE frames on peer links, and is released when it has had no client and
// nothing queued for the grace period (--group-grace-ms) while no peer queue holds frames (so no queued frame
// can carry an index that a new group takes again). Past --max-groups, a local client gets ERROR group_limit,
// and a peer's group is refused for that group alone (counted as groups_refused): the link stays up.
import BrokerWire

final class GroupTable {
    var byName: [String: Group] = [:]
    var list: [Group] = []
    /// Indexes of released groups, lowest last: the next group takes the lowest.
    var freeIndexes: [UInt32] = []
    var nextSweepAt: UInt64 = 0
    /// Groups whose queues passed the backpressure mark (Core+Backpressure.swift).
    var congested: [Group] = []
    var refused = 0
    var released = 0

    /// The index a new group takes: the lowest released one, or the next.
    func takeIndex() -> UInt32 {
        if let free = freeIndexes.popLast() { return free }
        return UInt32(list.count + 1)
    }
}

extension Core {
    /// The group of that name, made (and announced to every peer link) on first use; nil past --max-groups.
    func group(named name: String) -> Group? {
        if let existing = groups.byName[name] { return existing }
        guard groups.list.count < config.maxGroups else {
            if groups.refused % 1000 == 0 {
                logger.warning("group refused: this broker serves --max-groups groups already",
                               ["group": name, "max_groups": "\(config.maxGroups)", "groups_refused": "\(groups.refused)"])
            }
            return nil
        }
        let group = Group(name: name, index: groups.takeIndex(), peerCount: membership.linkList.count)
        groups.byName[name] = group
        groups.list.append(group)
        // Links that are down learn every group when they come up (activate prepends the binds).
        let bind = group.bindFrame
        for link in membership.linkList where link.connection != nil { link.enqueueControl(bind) }
        logger.debug("group created", ["group": name, "group.index": "\(group.index)"])
        return group
    }

    /// A peer's GROUP_BIND: its index for `name` on this link. The group itself is made when a frame needs it.
    func bind(group frame: GroupBindFrame, on connection: PeerSession) {
        guard let link = connection.link else { return }
        // The index named another group before: what this side owed that group's flows is void, and that
        // group has no receiver at the peer any more.
        if let previous = link.remoteGroupNames[frame.group], previous != frame.name {
            link.credit.forget(group: frame.group)
            setReceiver(of: previous, at: link, present: false)
        }
        link.remoteGroupNames[frame.group] = frame.name
        let existing = groups.byName[frame.name]
        link.remoteGroups[frame.group] = existing
        // A group made anew at the peer learns the master this broker knows.
        if let existing, existing.master != 0 { link.enqueueControl(existing.masterFrame) }
    }

    /// The group a peer's frame names by its index, made here if `create` and it does not exist (nil when it
    /// does not, or when there is no room: that frame is refused and counted). An index never bound is a bad frame.
    func boundGroup(_ link: PeerLink, _ index: UInt32, _ type: FrameType, create: Bool = true) throws(WireError) -> Group? {
        if let group = link.remoteGroups[index] { return group }
        guard let name = link.remoteGroupNames[index] else {
            throw .malformed(type: type, reason: "group index \(index) was never bound")
        }
        guard let group = create ? group(named: name) : groups.byName[name] else {
            if create { groups.refused += 1 }
            return nil
        }
        link.remoteGroups[index] = group
        return group
    }

    /// Releases the groups idle for the grace period (on the timer tick, at most every 500 ms, before the tick
    /// queues its heartbeats: queues were flushed at the end of the last pass).
    func releaseIdleGroups() {
        guard now >= groups.nextSweepAt else { return }
        groups.nextSweepAt = now + 500_000_000
        let grace = UInt64(config.groupGraceMilliseconds) * 1_000_000
        let peerQueuesEmpty = membership.linkList.allSatisfy { $0.queuedBytes == 0 }
        var released: [Group] = []
        for group in groups.list {
            guard group.isIdle else {
                group.idleSince = 0
                continue
            }
            if group.idleSince == 0 { group.idleSince = now }
            if peerQueuesEmpty && now &- group.idleSince >= grace { released.append(group) }
        }
        for group in released { release(group) }
    }

    private func release(_ group: Group) {
        groups.byName[group.name] = nil
        groups.list.removeAll { $0 === group }
        groups.freeIndexes.append(group.index)
        groups.freeIndexes.sort(by: >)
        for link in membership.linkList { link.removeFlows(of: group) }
        groups.congested.removeAll { $0 === group }
        for link in membership.linkList where link.remoteGroups.values.contains(where: { $0 === group }) {
            link.remoteGroups = link.remoteGroups.filter { $0.value !== group }
        }
        groups.released += 1
        logger.debug("group released", ["group": group.name, "group.index": "\(group.index)"])
    }
}
