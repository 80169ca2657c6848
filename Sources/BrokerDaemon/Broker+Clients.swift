// Local clients: registration, the receiver role and its hand-over, and routing of their messages.
// Routing copies the message once into each destination queue; nothing else is allocated per message.
import BrokerSystem
import BrokerWire

/// Where a message or channel frame goes (see `Broker.routeDecision`).
enum RouteDecision {
    /// This site (its id, after resolving -3).
    case local(Int32)
    case peer(PeerLink)
    case broadcast
    /// -3 with no master known.
    case noMaster
    case unroutable
}

extension Broker {
    /// A REGISTER of this version (LocalClient checked the version before the layout).
    func register(_ client: LocalClient, _ frame: RegisterFrame) throws(WireError) {
        guard let group = group(named: frame.group) else {
            groupsRefused += 1
            let reason = "group '\(frame.group)' is new and this broker serves \(config.maxGroups) groups already (--max-groups)"
            client.writeErrorNow(.groupLimit, reason)
            client.close(reason: reason)
            return
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
        let welcome = WelcomeFrame(roleState: client.roleState, siteID: config.siteID, clientID: client.id,
                                   maxMessage: UInt64(config.maxMessageBytes))
        do {
            if try client.offerRings(requested: frame.ringBytes, welcome: welcome) {
                ringClients.append(client)
            } else {
                client.send(.welcome, body: welcome.body)
            }
        } catch {
            logger.warning("cannot set up shared-memory rings; the client uses the socket",
                           ["client.id": "\(client.id)", "reason": "\(error)"])
            client.rings = nil
            client.send(.welcome, body: welcome.body)
        }
        if client.roleState == .receiver {
            sendSiteStates(to: client)
            handOverPending(group, to: client)
            announceReceiver(group)
        } else if group.producersPaused && client.rings == nil {
            // A producer that arrives while its group is congested waits like the others (a ring's is not drained).
            client.setReadingPaused(true)
        }
        logger.info("client registered", [
            "client.id": "\(client.id)", "client.pid": "\(client.pid)", "client.name": frame.name,
            "group": frame.group, "role": "\(client.roleState)", "transport": client.transportName,
        ])
    }

    func handOverPending(_ group: Group, to client: LocalClient) {
        guard group.pendingMessages > 0 else { return }
        client.deliverQueued(group.pending, messages: group.pendingMessages, payloadBytes: group.pendingPayloadBytes)
        group.delivered += group.pendingMessages
        group.pendingMessages = 0
        group.pendingPayloadBytes = 0
    }

    func clientClosed(_ client: LocalClient, reason: String) {
        clients[client.id] = nil
        if trimMemoryAt == 0 { trimMemoryAt = now + 1_000_000_000 }
        if client.rings != nil { ringClients.removeAll { $0 === client } }
        logger.info("client disconnected", ["client.id": "\(client.id)", "client.pid": "\(client.pid)",
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
        logger.info("receiver role passed on", ["group": group.name, "client.id": "\(next.id)",
                                                "client.pid": "\(next.pid)"])
    }

    /// Routes one client message (from its socket) to where `routeDecision` says.
    func route(from client: LocalClient, _ header: MessageHeader, payload: UnsafeRawBufferPointer) {
        client.$group?.with { route(from: client, in: $0, header, payload: payload) }
    }

    /// Routes one client message of `group`: to one peer, to every peer (broadcast), or to this site's receiver.
    func route(from client: LocalClient, in group: Group, _ header: MessageHeader, payload: UnsafeRawBufferPointer) {
        client.messagesSent += 1
        client.bytesSent += payload.count
        routedMessages += 1
        var out = header
        out.group = group.index
        out.source = config.siteID
        out.sequence = 0
        let size = Wire.frameHeaderSize + Wire.messageHeaderSize + payload.count
        let permanent = header.flags.contains(.permanent)
        var status = SendStatus.ok
        switch routeDecision(group, header.destination) {
        case .broadcast:
            if permanent, let full = linkList.first(where: { !$0.removed && !$0.hasRoom(for: size) }) {
                full.refused += 1
                status = .queueFull
            } else {
                var queued = 0
                var dropped = 0
                for link in linkList where !link.removed {
                    if link.hasRoom(for: size) {
                        let flow = link.flow(group, .replication)
                        link.enqueue(out, payload: payload, in: flow)
                        if flow.unsentBytes > backpressureBytes { congest(group) }
                        queued += 1
                    } else {
                        link.dropped += 1
                        dropped += 1
                    }
                }
                if dropped > 0 { status = queued == 0 ? .queueFull : .partlyQueued }
            }
        case .local(let site):
            out.group = 0
            out.destination = site
            if !deliverLocally(group, out, payload: payload) { status = .queueFull }
        case .peer(let link):
            out.destination = link.siteID
            if link.hasRoom(for: size) {
                let flow = link.flow(group, .replication)
                link.enqueue(out, payload: payload, in: flow)
                if flow.unsentBytes > backpressureBytes { congest(group) }
            } else {
                if permanent { link.refused += 1 } else { link.dropped += 1 }
                status = .queueFull
            }
        case .noMaster, .unroutable:
            status = .unroutable
            unroutable += 1
        }
        guard header.sequence != 0 else { return }
        if status == .ok && permanent {
            awaitAcks(client, group, sequence: header.sequence, lsn: header.lsn)
        } else {
            client.sendResult(header.sequence, status)
        }
    }

    /// Where a frame of `group` addressed to `destination` goes: the one decision for messages and channels.
    /// -3 resolves now to the site last announced as master; a removed or unknown site is unroutable.
    @inline(__always)
    func routeDecision(_ group: Group, _ destination: Int32) -> RouteDecision {
        var site = destination
        if site == SiteID.master {
            guard group.master != 0 else { return .noMaster }
            site = group.master
        }
        if site == SiteID.broadcast { return .broadcast }
        if site == config.siteID { return .local(site) }
        guard site > 0, let link = links[site], !link.removed else { return .unroutable }
        return .peer(link)
    }

    /// Hands a message (header already labelled for the client) to the group's receiver, or queues it; false
    /// when it was dropped (a full queue; counted).
    @discardableResult
    func deliverLocally(_ group: Group, _ header: MessageHeader, payload: UnsafeRawBufferPointer) -> Bool {
        if let receiver = group.$receiver {
            let delivered = receiver.with { $0.deliver(header, payload: payload) }
            if delivered { group.delivered += 1 } else { group.dropped += 1 }
            if receiver.with({ $0.output.byteCount }) > backpressureBytes { congest(group) }
            return delivered
        }
        let size = Wire.frameHeaderSize + Wire.messageHeaderSize + payload.count
        guard group.pending.isEmpty || group.pending.byteCount + size <= config.inboundQueueBytes else {
            group.dropped += 1
            if group.dropped == 1 || group.dropped % 1000 == 0 {
                logger.warning("no receiver and the inbound queue is full: dropping", [
                    "group": group.name, "group.dropped": "\(group.dropped)",
                ])
            }
            return false
        }
        header.append(payload: payload, to: group.pending.buffer)
        group.pendingMessages += 1
        group.pendingPayloadBytes += payload.count
        return true
    }
}
