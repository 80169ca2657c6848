// Peer links: dialling (asked of the shell), the HELLO / ACTIVATE handshake that keeps one connection per site
// pair, link up and down. A peer's messages are routed in Core+Routing.swift.
import BrokerWire

extension Core {
    /// Asks the shell to dial `link` (the timer does, when it is down and its backoff is over).
    func dial(_ link: PeerLink) {
        guard let address = link.address, !link.removed, link.dialing == nil else { return }
        // The next try waits out the backoff whatever becomes of this one; a link that comes up resets it.
        link.scheduleRedial(now: now, random: &random)
        act(.dial(site: link.siteID, address: address.text))
    }

    /// A dial the shell could not start: the name did not resolve (`unresolved`), or the connect failed at once.
    public func dialFailed(site: Int32, reason: String, unresolved: Bool) {
        guard let link = membership.links[site] else { return }
        let failedBefore = unresolved ? link.address?.failure != nil : link.failedSinceUp
        if unresolved { link.address?.failure = reason } else { link.address?.failure = nil }
        dialFailed(link, reason: reason, firstFailure: !failedBefore,
                   what: unresolved ? "cannot resolve peer address" : "cannot reach peer")
    }

    private func dialFailed(_ link: PeerLink, reason: String, firstFailure: Bool, what: String = "cannot reach peer") {
        link.failedSinceUp = true
        let metadata: Logger.Metadata = ["peer.site_id": "\(link.siteID)", "reason": reason,
                                         "retry_ms": "\(link.nextDialAt > now ? (link.nextDialAt - now) / 1_000_000 : 0)"]
        if firstFailure { logger.warning(what, metadata) } else { logger.debug(what, metadata) }
    }

    /// The other side's HELLO arrived: check it, then (as arbiter) choose the link's connection.
    func peerSaidHello(_ connection: PeerSession, _ hello: HelloFrame) {
        guard hello.siteID != config.siteID else {
            return connection.reject(.siteConflict, "peer claims this broker's own site id \(hello.siteID)")
        }
        if let certified = connection.certifiedSite, certified != hello.siteID {
            counters.tlsFailures += 1
            return connection.reject(.tls, "the peer's HELLO says site \(hello.siteID) and its certificate names "
                + "site \(certified)")
        }
        if let key = config.groupKey {
            guard hello.keyed else {
                return connection.reject(.auth, "site \(hello.siteID) has no group key; this group requires one")
            }
            // Prove the key over both nonces, then wait for the peer's proof before anything else.
            connection.awaitingAuth = true
            connection.sendAuth(AuthFrame.proof(key: key, prover: config.siteID, proverNonce: connection.nonce,
                                                verifierNonce: hello.nonce))
            return
        }
        guard !hello.keyed else {
            return connection.reject(.auth, "site \(hello.siteID) has a group key; this broker has none (--group-key-file)")
        }
        admit(connection, hello)
    }

    /// The peer's AUTH: checked against the proof only a holder of the key can make.
    func peerAuthenticated(_ connection: PeerSession, _ auth: AuthFrame) {
        guard let key = config.groupKey, let hello = connection.hello else { return }
        let expected = AuthFrame.proof(key: key, prover: hello.siteID, proverNonce: hello.nonce,
                                       verifierNonce: connection.nonce)
        guard HMACSHA256.equal(auth.mac, expected) else {
            countBadFrame(peer: connection.peerDescription, .malformed(type: .auth, reason: "bad group key proof"))
            return connection.reject(.auth, "site \(hello.siteID) failed the group key proof")
        }
        connection.awaitingAuth = false
        admit(connection, hello)
    }

    /// A peer that said HELLO (and proved the key, when there is one): membership, then the arbiter's choice.
    func admit(_ connection: PeerSession, _ hello: HelloFrame) {
        if let known = membership.links[hello.siteID] {
            if known.removed {
                return connection.reject(.unknownSite, "site \(hello.siteID) was removed from the group")
            }
            if hello.joining, !hello.address.isEmpty, let address = known.address?.text, address != hello.address {
                return connection.reject(.siteConflict, "site id \(hello.siteID) is already a member at \(address); "
                    + "\(hello.address) cannot join with it")
            }
        } else if hello.joining && !hello.address.isEmpty {
            // A site joining through this broker: it becomes a member, and every other member hears of it.
            guard let added = addLink(siteID: hello.siteID, address: hello.address, origin: .joined) else {
                return connection.reject(.unknownSite, "this group is full")
            }
            spread(FrameParser.encode(.members, body: MembersFrame(members: [
                MembersFrame.Member(siteID: hello.siteID, address: hello.address)]).body), except: added)
        } else if let target = connection.joinTarget {
            // The member this broker joined through: this HELLO, on a connection dialled to it, proves its address.
            let address = membership.joinTargets[target].address
            guard addLink(siteID: hello.siteID, address: address, origin: .joined, verified: true) != nil else {
                return connection.reject(.unknownSite, "too many sites")
            }
        }
        guard let link = membership.links[hello.siteID] else {
            return connection.reject(.unknownSite, "site \(hello.siteID) is not a configured peer of site "
                + "\(config.siteID)")
        }
        if connection.joinTarget != nil {
            membership.joinDials.removeAll { $0 === connection }
            if link.connection != nil { return connection.reject(.duplicateLink, "already linked", quietly: true) }
        } else if connection.outgoing, let dialled = connection.link, dialled !== link {
            if dialled.address?.verified == false {
                logger.warning("a learned address answered with another site id: forgotten", [
                    "peer.site_id": "\(dialled.siteID)", "peer.address": dialled.address?.text ?? "-",
                    "answered": "\(hello.siteID)"])
                dialled.address = nil
            }
            return connection.reject(.unknownSite, "dialled site \(dialled.siteID) but site \(hello.siteID) answered")
        } else if connection.outgoing, link.address?.verified == false {
            // This broker dialled the address and the site it was learned for answered: proved, so stored.
            link.address?.verified = true
            saveMembership()
        } else if !connection.outgoing, !hello.joining, !hello.address.isEmpty, let known = link.address?.text,
                  known != hello.address {
            relocate(link, to: hello.address)
        }
        connection.link = link
        guard config.siteID < hello.siteID else { return }  // the peer arbitrates; wait for its ACTIVATE
        if let active = link.connection {
            if link.remoteIncarnation == hello.incarnation {
                return connection.reject(.duplicateLink, "site \(hello.siteID) already has a link", quietly: true)
            }
            active.closedQuietly = true
            active.close(reason: "site \(hello.siteID) restarted; its new connection replaces this one")
        }
        connection.sendActivate()
        activate(connection)
    }

    /// Makes `connection` the link to its site (both ends call this: the arbiter on choosing it, the
    /// other end on ACTIVATE).
    func activate(_ connection: PeerSession) {
        guard let link = connection.link, let hello = connection.hello else { return }
        if let old = link.connection, old !== connection {
            old.closedQuietly = true
            old.close(reason: "replaced by a newer connection")
        }
        if let dialing = link.dialing, dialing !== connection {
            dialing.closedQuietly = true
            dialing.close(reason: "link established on the other connection")
        }
        link.dialing = nil
        membership.handshaking.removeAll { $0 === connection }
        connection.phase = .active
        link.connection = connection
        if link.remoteIncarnation != hello.incarnation {
            // Another incarnation of the peer: its numbering starts again, and what its previous one had not
            // acknowledged may or may not have been delivered there.
            link.credit.forgetSequences()
            let dropped = link.dropUnacknowledged()
            if dropped > 0 {
                link.dropped += dropped
                link.droppedAtRestart += dropped
                logger.warning("peer restarted: frames it had not acknowledged are dropped", [
                    "peer.site_id": "\(link.siteID)", "dropped": "\(dropped)"])
            }
        }
        link.remoteIncarnation = hello.incarnation
        link.security = connection.security ?? "plain"
        link.protocolVersion = connection.protocolVersion
        link.probeSentAt = 0
        link.remoteGroups.removeAll(keepingCapacity: true)
        link.remoteGroupNames.removeAll(keepingCapacity: true)
        link.receiverGroups.removeAll()
        link.lastHeard = now
        link.heardSinceTick = false
        link.liveness.reset()
        link.lastSent = now
        link.backoffMilliseconds = PeerLink.minimumBackoff
        if link.everUp { link.reconnects += 1 }
        link.everUp = true
        link.failedSinceUp = false
        // The peer learns our group indexes anew on every connection: binds (with the master and whether the
        // group has a receiver here) go before anything queued.
        link.restartFlows(window: Int(hello.window))
        link.wire.prepend(groups.list.flatMap { $0.linkUpFrames } + membership.membersFrame(siteID: config.siteID)
            + membership.removalFrames)
        connection.scheduleFlush()
        logger.info("peer link up", ["peer.site_id": "\(link.siteID)", "direction": connection.outgoing ? "out" : "in",
                                     "queued_bytes": "\(link.queuedBytes)", "protocol": "\(link.protocolVersion)"])
        if link.protocolVersion < 6 {
            logger.warning("peer speaks protocol \(link.protocolVersion): this link works as in that version, without "
                + "heartbeat round trips (no rtt in stats or metrics) until the peer is upgraded", [
                    "peer.site_id": "\(link.siteID)"])
        }
    }

    func peerConnectionClosed(_ connection: PeerSession, reason: String) {
        membership.handshaking.removeAll { $0 === connection }
        membership.joinDials.removeAll { $0 === connection }
        guard let link = connection.link else {
            logger.debug("peer connection closed before its handshake", ["reason": reason])
            return
        }
        if link.connection === connection {
            link.connection = nil
            link.remoteGroups.removeAll()
            link.remoteGroupNames.removeAll()
            if !connection.closedQuietly {
                link.failedSinceUp = true
                link.nextDialAt = now + UInt64(PeerLink.minimumBackoff) * 1_000_000
            }
            siteWentDown(link)
            logger.warning("peer link down", ["peer.site_id": "\(link.siteID)", "reason": reason,
                                              "queued_bytes": "\(link.queuedBytes)"])
        } else if link.dialing === connection {
            link.dialing = nil
            if !connection.closedQuietly && link.connection == nil {
                dialFailed(link, reason: reason, firstFailure: !link.failedSinceUp)
            }
        } else {
            logger.debug("spare peer connection closed", ["peer.site_id": "\(link.siteID)", "reason": reason])
        }
    }
}
