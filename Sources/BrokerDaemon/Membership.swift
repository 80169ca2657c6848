// Group membership beyond the static --peer list: sites join through any member (--join), the helper and
// every member spread what they learn (MEMBERS), a site can be removed for good (REMOVE_SITE), and each
// broker keeps what it knows in a membership file (written atomically) that it reloads on start.
import BrokerSystem
import BrokerWire
import Foundation

/// One line of the membership file.
struct MemberRecord: Codable {
    var site_id: Int32
    var address: String
    var origin: PeerOrigin
    var removed: Bool
}

extension Broker {
    var membershipPath: String {
        let directory = config.stateDirectory
            ?? config.socketPath.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return (directory.isEmpty ? "." : directory) + "/membership-site\(config.siteID).json"
    }

    /// Sites remembered from an earlier run (not those configured now).
    func loadMembership() {
        guard let data = FileManager.default.contents(atPath: membershipPath),
              let records = try? JSONDecoder().decode([MemberRecord].self, from: data) else { return }
        for record in records where links[record.site_id] == nil && record.site_id != config.siteID {
            let link = addLink(siteID: record.site_id, address: record.address, origin: record.origin, verified: true,
                               persist: false)
            link?.removed = record.removed
        }
        logger.info("membership loaded", ["path": membershipPath, "sites": "\(records.count)"])
    }

    /// Writes what this broker knows: a temporary file renamed over the old one.
    func saveMembership() {
        // Only an address a HELLO proved (or the operator configured) is stored.
        let records = linkList.map { link in
            MemberRecord(site_id: link.siteID, address: link.address?.verified == true ? link.address?.text ?? "" : "",
                         origin: link.origin, removed: link.removed)
        }
        guard let data = try? JSONEncoder().encode(records) else { return }
        let temporary = membershipPath + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data),
              rename(temporary, membershipPath) == 0 else {
            logger.warning("cannot write the membership file", ["path": membershipPath, "reason": "\(Errno.current)"])
            return
        }
    }

    /// A new site: a link (dialled by the timer), a place in every group's ack table, the membership file.
    /// `address` is empty when none is known; a wildcard or malformed one is refused (logged) and not kept.
    @discardableResult
    func addLink(siteID: Int32, address: String, origin: PeerOrigin, verified: Bool = false,
                 persist: Bool = true) -> PeerLink? {
        if let existing = links[siteID] {
            // A site known without an address (it dialled in, or its address was not proved before a restart).
            if existing.address == nil, !existing.removed, !address.isEmpty {
                existing.address = checkedAddress(address, siteID, verified)
            }
            return existing
        }
        guard linkList.count < Wire.maxMembers else {
            logger.warning("site refused: the group is full", ["peer.site_id": "\(siteID)"])
            return nil
        }
        let link = PeerLink(siteID: siteID, index: linkList.count,
                            address: address.isEmpty ? nil : checkedAddress(address, siteID, verified),
                            origin: origin, queueLimit: config.peerQueueBytes)
        links[siteID] = link
        linkList.append(link)
        for group in groupList { group.ackedLSN.append(.zero) }
        if persist { saveMembership() }
        logger.info("site added", ["peer.site_id": "\(siteID)", "peer.address": address, "origin": origin.rawValue])
        return link
    }

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

    /// Members this broker knows, itself included (by its advertised address), for MEMBERS.
    var membersFrame: [UInt8] {
        var members = linkList.filter { !$0.removed && $0.address != nil }.map {
            MembersFrame.Member(siteID: $0.siteID, address: $0.address?.text ?? "")
        }
        if let advertised { members.append(MembersFrame.Member(siteID: config.siteID, address: advertised)) }
        return FrameParser.encode(.members, body: MembersFrame(members: members).body)
    }

    /// Sends `frame` on every connected link but `except`.
    func spread(_ frame: [UInt8], except: PeerLink?) {
        for link in linkList where link !== except && !link.removed && link.connection != nil {
            link.enqueueControl(frame)
        }
    }

    /// MEMBERS from a peer: unknown sites are added (learned) and passed on to the other members; a known site
    /// without an address takes the one given (unproved until this broker's dial is answered by that site).
    func membersFromPeer(_ frame: MembersFrame, on connection: PeerConnection) {
        var fresh: [MembersFrame.Member] = []
        for member in frame.members where member.siteID != config.siteID {
            let unknown = links[member.siteID] == nil
            if addLink(siteID: member.siteID, address: member.address, origin: .learned) != nil, unknown {
                fresh.append(member)
            }
        }
        if !fresh.isEmpty {
            spread(FrameParser.encode(.members, body: MembersFrame(members: fresh).body), except: connection.link)
        }
    }

    /// Removes a site for good and tells the other members.
    @discardableResult
    func removeSite(_ siteID: Int32, from source: PeerLink?) -> Bool {
        guard siteID != config.siteID else {
            logger.warning("a member says this site was removed from the group", ["by": "\(source?.siteID ?? 0)"])
            return false
        }
        guard let link = links[siteID], !link.removed else { return false }
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

    /// Dials the --join targets until this broker has a link.
    func dialJoinTargets() {
        guard !joinTargets.isEmpty, !linkList.contains(where: { $0.connection != nil }), joinDials.isEmpty,
              now >= nextJoinDialAt else { return }
        nextJoinDialAt = now + 500_000_000
        for (index, target) in joinTargets.enumerated() {
            if target.needsResolution(now: now) {
                joinTargets[index].resolving = true
                resolver.request(.join(index), target.text)
            }
            guard let address = target.resolved else { continue }
            do {
                let fd = try Socket.connectTCP(address)
                learnAdvertisedAddress(from: fd, connectionTo: "join target \(target.text)")
                let connection = PeerConnection(descriptor: fd, broker: self, outgoing: nil, joinTarget: address)
                do { try connection.register(connecting: true) } catch {
                    Posix.close(descriptor: fd)
                    continue
                }
                joinDials.append(connection)
                handshaking.append(connection)
            } catch {
                logger.debug("cannot reach join target", ["target": target.text, "reason": "\(error)"])
            }
        }
    }

    /// A fatal condition (a duplicate site id): stop, and make the process exit 1.
    func stopFatally(_ reason: String) {
        logger.error(reason)
        fatalReason = reason
        requestStop()
    }
}
