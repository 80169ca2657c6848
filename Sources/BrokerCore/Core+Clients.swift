// Local clients: registration (WELCOME, with rings the shell makes), the receiver role and its hand-over to a
// standby, and what a client leaves behind when it goes.
import BrokerWire

extension Core {
    /// A REGISTER of this version (the session checked the version before the layout).
    func register(_ client: ClientSession, _ frame: RegisterFrame) throws(WireError) {
        guard let group = group(named: frame.group) else {
            groups.refused += 1
            let reason = "group '\(frame.group)' is new and this broker serves \(config.maxGroups) groups already (--max-groups)"
            return client.close(reason: reason, lastWords: Session.errorFrame(.groupLimit, reason))
        }
        client.registration = frame
        client.group = group
        group.clientCount += 1
        group.idleSince = 0
        if client.pid == 0 { client.pid = frame.pid }
        if frame.roles.contains(.receiver) {
            if group.receiver == nil {
                group.receiver = client
                client.roleState = .receiver
            } else {
                group.standbys.append(client)
                client.roleState = .standby
            }
        }
        var welcome = WelcomeFrame(version: client.protocolVersion, roleState: client.roleState, siteID: config.siteID,
                                   clientID: client.clientID, maxMessage: UInt64(config.maxMessageBytes))
        let maximum = config.maxRingBytes
        let ringBytes = frame.ringBytes > 0 && maximum >= RingLayout.minimumRingBytes
            ? RingLayout.grantedRingBytes(requested: Int(frame.ringBytes), maximum: maximum) : 0
        welcome.ringBytes = UInt32(ringBytes)
        client.awaitingWelcome = true
        act(.welcome(client.id, welcome))
        if client.roleState == .receiver {
            sendSiteStates(to: client)
            handOverPending(group, to: client)
            announceReceiver(group)
        }
        logger.info("client registered", [
            "client.id": "\(client.clientID)", "client.pid": "\(client.pid)", "client.name": frame.name,
            "group": frame.group, "role": "\(client.roleState)", "transport": ringBytes > 0 ? "shm" : "uds",
            "protocol": "\(client.protocolVersion)",
        ])
        if client.protocolVersion < Wire.protocolVersion {
            logger.info("client speaks protocol \(client.protocolVersion), the version before this broker's: it is served "
                + "as in that version (nothing it uses is missing)", ["client.id": "\(client.clientID)"])
        }
    }

    /// The shell sent the client's WELCOME, with rings or without (it asked for none, or they could not be made).
    func welcomed(_ client: ClientSession, rings: ClientRings?) {
        client.awaitingWelcome = false
        if let rings {
            client.rings = rings
            // Control frames queued before the rings existed go by the socket; the receiver's stay for the ring.
            client.output.moveFrames(to: rings.socketOutput.buffer) { $0 != .message && $0 != .siteEvent }
            clients.ringClients.append(client)
        } else if client.registration?.ringBytes ?? 0 > 0 {
            logger.warning("cannot set up shared-memory rings; the client uses the socket",
                           ["client.id": "\(client.clientID)"])
        }
        if let group = client.group, rings == nil, group.producersPaused, client.roleState != .receiver,
           !config.mutations.contains(.lateProducerNotPaused) {
            // A producer that arrives while its group is congested waits like the others (a ring's is not drained).
            client.setReadingPaused(true)
        }
        client.scheduleFlush()
    }

    func handOverPending(_ group: Group, to client: ClientSession) {
        guard group.pendingMessages > 0 else { return }
        client.deliverQueued(group.pending, messages: group.pendingMessages, payloadBytes: group.pendingPayloadBytes)
        group.delivered += group.pendingMessages
        group.pendingMessages = 0
        group.pendingPayloadBytes = 0
    }

    func clientClosed(_ client: ClientSession, reason: String) {
        clients.byID[client.clientID] = nil
        if trimMemoryAt == 0 { trimMemoryAt = now + 1_000_000_000 }
        if client.rings != nil { clients.ringClients.removeAll { $0 === client } }
        logger.info("client disconnected", ["client.id": "\(client.clientID)", "client.pid": "\(client.pid)",
                                            "reason": reason])
        forgetPendingAcks(of: client)
        unsubscribeAll(client)
        guard let group = client.group else { return }
        group.clientCount -= 1
        group.standbys.removeAll { $0 === client }
        guard group.receiver === client else { return }
        group.receiver = nil
        // Whole frames the dead receiver never got go to the next receiver; a half-written one is lost.
        if client.output.discardPartialFront() { client.dropped += 1 }
        let handed = client.output.moveMessages(to: group.pending.buffer, limit: config.inboundQueueBytes)
        group.pendingMessages += handed.moved
        group.pendingPayloadBytes += handed.payloadBytes
        group.delivered -= handed.moved
        client.dropped += handed.dropped
        group.dropped += handed.dropped
        guard let next = group.takeNextStandby() else {
            logger.warning("group has no receiver; inbound messages wait (bounded) for one", ["group": group.name])
            announceReceiver(group)
            return
        }
        group.receiver = next
        next.roleState = .receiver
        next.setReadingPaused(false)  // a receiver is never paused
        next.send(.role, body: RoleFrame(roleState: .receiver).body)
        sendSiteStates(to: next)
        handOverPending(group, to: next)
        logger.info("receiver role passed on", ["group": group.name, "client.id": "\(next.clientID)",
                                                "client.pid": "\(next.pid)"])
    }

    func countBadFrame(clientID: UInt32, _ error: WireError) {
        counters.badFrames += 1
        logger.warning("bad frame from a client, closing it", ["client.id": "\(clientID)", "reason": "\(error)"])
    }

    func countBadFrame(peer: String, _ error: WireError) {
        counters.badFrames += 1
        logger.warning("bad frame from a peer connection, closing it", ["peer": peer, "reason": "\(error)"])
    }
}
