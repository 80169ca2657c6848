// The sites of the group as this broker knows them: the static --peer list, sites that joined through any
// member (--join), sites learned from MEMBERS, sites removed for good; the links to them, the connections
// being dialled or handshaking, the --join targets, and the address this site advertises. The shell stores
// what it knows (CoreAction.saveMembership) and gives it back at start.
import BrokerWire

final class Membership {
    var links: [Int32: PeerLink] = [:]
    /// In the order they were added: a link's `index` is its place here (and in every group's ack table).
    var linkList: [PeerLink] = []
    /// Connections that said HELLO and are not links yet.
    var handshaking: [PeerSession] = []
    /// --join targets, dialled until this broker has a link; the join connections in progress.
    var joinTargets: [JoinTarget]
    var joinDials: [PeerSession] = []
    var nextJoinDialAt: UInt64 = 0
    /// The address other sites dial to reach this one (never a wildcard); nil until known.
    var advertised: String?

    struct JoinTarget {
        let address: String
        /// Why its last dial could not start (its name did not resolve); nil otherwise.
        var failure: String?
    }

    init(config: CoreConfig) {
        joinTargets = config.join.map { JoinTarget(address: $0) }
        if let advertise = config.advertise {
            advertised = advertise
        } else if let listen = config.listen, HostPort(listen)?.isWildcard == false {
            advertised = listen
        }
    }

    /// Members this broker knows, itself included (by its advertised address), as a MEMBERS frame.
    func membersFrame(siteID: Int32) -> [UInt8] {
        var members = linkList.filter { !$0.removed && $0.address != nil }.map {
            MembersFrame.Member(siteID: $0.siteID, address: $0.address?.text ?? "")
        }
        if let advertised { members.append(MembersFrame.Member(siteID: siteID, address: advertised)) }
        return FrameParser.encode(.members, body: MembersFrame(members: members).body)
    }

    /// A REMOVE_SITE for every site removed: a member that was not linked when a site was removed learns it
    /// on its next link (found by the simulator: it kept the site, dialled it and queued for it for good).
    var removalFrames: [UInt8] {
        linkList.filter(\.removed).flatMap { FrameParser.encode(.removeSite, body: RemoveSiteFrame(siteID: $0.siteID).body) }
    }

    /// What the membership file holds: only an address a HELLO proved (or the operator configured).
    var records: [MemberRecord] {
        linkList.map { link in
            MemberRecord(site_id: link.siteID, address: link.address?.verified == true ? link.address?.text ?? "" : "",
                         origin: link.origin, removed: link.removed)
        }
    }

    /// Sites that count for the ack policies: this one and every member not removed.
    var groupSize: Int { linkList.reduce(1) { $1.removed ? $0 : $0 + 1 } }
}

extension Core {
    /// A new site: a link (dialled by the timer), a place in every group's ack table, the membership file.
    /// `address` is empty when none is known; a wildcard or malformed one is refused (logged) and not kept.
    @discardableResult
    func addLink(siteID: Int32, address: String, origin: PeerOrigin, verified: Bool = false,
                 persist: Bool = true) -> PeerLink? {
        if let existing = membership.links[siteID] {
            // A site known without an address (it dialled in, or its address was not proved before a restart).
            if existing.address == nil, !existing.removed, !address.isEmpty {
                existing.address = checkedAddress(address, siteID, verified)
            }
            return existing
        }
        guard membership.linkList.count < Wire.maxMembers else {
            logger.warning("site refused: the group is full", ["peer.site_id": "\(siteID)"])
            return nil
        }
        let link = PeerLink(siteID: siteID, index: membership.linkList.count,
                            address: address.isEmpty ? nil : checkedAddress(address, siteID, verified),
                            origin: origin, queueLimit: config.peerQueueBytes)
        membership.links[siteID] = link
        membership.linkList.append(link)
        for group in groups.list { group.ackedLSN.append(.zero) }
        if persist { saveMembership() }
        logger.info("site added", ["peer.site_id": "\(siteID)", "peer.address": address, "origin": origin.rawValue])
        return link
    }

    func saveMembership() { act(.saveMembership(membership.records)) }

    /// A member whose own HELLO advertises another address than the one known moved (it restarted with another
    /// --advertise or --listen): the new address replaces the old, unproved until this broker dials it.
    func relocate(_ link: PeerLink, to text: String) {
        guard let address = checkedAddress(text, link.siteID, false) else { return }
        logger.info("peer site moved", ["peer.site_id": "\(link.siteID)", "from": link.address?.text ?? "-", "to": text])
        link.address = address
        saveMembership()
    }

    func checkedAddress(_ text: String, _ siteID: Int32, _ verified: Bool) -> PeerAddress? {
        switch PeerAddress.parse(text, verified: verified) {
        case .success(let address): return address
        case .failure(let refused):
            logger.warning("peer address not kept", ["peer.site_id": "\(siteID)", "reason": "\(refused)"])
            return nil
        }
    }

    /// Sends `frame` on every connected link but `except`.
    func spread(_ frame: [UInt8], except: PeerLink?) {
        for link in membership.linkList where link !== except && !link.removed && link.connection != nil {
            link.enqueueControl(frame)
        }
    }

    /// MEMBERS from a peer: unknown sites are added (learned) and passed on to the other members; a known site
    /// without an address takes the one given (unproved until this broker's dial is answered by that site).
    func membersFromPeer(_ frame: MembersFrame, on connection: PeerSession) {
        var fresh: [MembersFrame.Member] = []
        for member in frame.members where member.siteID != config.siteID {
            let unknown = membership.links[member.siteID] == nil
            if addLink(siteID: member.siteID, address: member.address, origin: .learned) != nil, unknown {
                fresh.append(member)
            }
        }
        if !fresh.isEmpty {
            spread(FrameParser.encode(.members, body: MembersFrame(members: fresh).body), except: connection.link)
        }
    }

    /// Removes a site for good and tells the other members (from the admin socket when `source` is nil).
    @discardableResult
    public func removeSite(_ siteID: Int32) -> Bool { removeSite(siteID, from: nil) }

    @discardableResult
    func removeSite(_ siteID: Int32, from source: PeerLink?) -> Bool {
        guard siteID != config.siteID else {
            logger.warning("a member says this site was removed from the group", ["by": "\(source?.siteID ?? 0)"])
            return false
        }
        guard let link = membership.links[siteID], !link.removed else { return false }
        link.removed = true
        link.connection?.closedQuietly = true
        link.connection?.close(reason: "site \(siteID) was removed from the group")
        link.dialing?.close(reason: "site \(siteID) was removed from the group")
        link.releaseQueues()
        saveMembership()
        spread(FrameParser.encode(.removeSite, body: RemoveSiteFrame(siteID: siteID).body), except: source)
        logger.info("site removed from the group", ["peer.site_id": "\(siteID)", "by": source.map { "site \($0.siteID)" } ?? "admin"])
        return true
    }

    /// Asks for a dial to each --join target until this broker has a link (every half second at most).
    func dialJoinTargets() {
        guard !membership.joinTargets.isEmpty, !membership.linkList.contains(where: { $0.connection != nil }),
              membership.joinDials.isEmpty, now >= membership.nextJoinDialAt else { return }
        membership.nextJoinDialAt = now + 500_000_000
        for (index, target) in membership.joinTargets.enumerated() { act(.dialJoin(index: index, address: target.address)) }
    }

    /// A --join target's dial could not start (its name did not resolve, or the connect failed at once).
    public func joinDialFailed(index: Int, reason: String) {
        guard membership.joinTargets.indices.contains(index) else { return }
        if membership.joinTargets[index].failure == nil {
            logger.warning("cannot reach join target", ["target": membership.joinTargets[index].address, "reason": reason])
        }
        membership.joinTargets[index].failure = reason
    }

    /// With a wildcard --listen and no --advertise: the local address of a peer connection (HOST:PORT, with the
    /// listen port) is the address other sites can reach this one at. The shell tells it for each new one.
    public func learnLocalAddress(_ text: String, from peer: String) {
        guard membership.advertised == nil, let address = HostPort(text), !address.isWildcard else { return }
        membership.advertised = text
        logger.info("advertising this site's address", ["address": text, "learned_from": peer])
    }

    /// Whether the shell should tell `learnLocalAddress` (no address to advertise yet).
    public var needsLocalAddress: Bool { membership.advertised == nil }

    /// The address other sites dial to reach this one (never a wildcard); nil until known.
    public var advertised: String? { membership.advertised }
}
