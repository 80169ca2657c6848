// Routing: where a message from a local client goes (one peer, every peer, or this site's receiver), a peer's
// message (checked against its flow's numbers, labelled with the link's site), and delivery here. The one
// decision messages and channels share (`routeDecision`). Routing copies the message once into each
// destination's queue; nothing else is allocated per message.
import BrokerWire

/// Where a message or channel frame goes (see `Core.routeDecision`).
enum RouteDecision {
    /// This site (its id, after resolving -3).
    case local(Int32)
    case peer(PeerLink)
    case broadcast
    /// -3 with no master known.
    case noMaster
    case unroutable
}

extension Core {
    /// Routes one client message (from its socket) to where `routeDecision` says.
    func route(from client: ClientSession, _ header: MessageHeader, payload: UnsafeRawBufferPointer) {
        client.$group?.with { route(from: client, in: $0, header, payload: payload) }
    }

    /// Routes one client message of `group`: to one peer, to every peer (broadcast), or to this site's receiver.
    func route(from client: ClientSession, in group: Group, _ header: MessageHeader, payload: UnsafeRawBufferPointer) {
        client.messagesSent += 1
        client.bytesSent += payload.count
        counters.routedMessages += 1
        var out = header
        out.group = group.index
        out.source = config.siteID
        out.sequence = 0
        let size = Wire.frameHeaderSize + Wire.messageHeaderSize + payload.count
        let permanent = header.flags.contains(.permanent)
        var status = SendStatus.ok
        switch routeDecision(group, header.destination) {
        case .broadcast:
            if permanent, let full = membership.linkList.first(where: { !$0.removed && !$0.hasRoom(for: size) }) {
                full.refused += 1
                status = .queueFull
            } else {
                var queued = 0
                var dropped = 0
                for link in membership.linkList where !link.removed {
                    if link.hasRoom(for: size) {
                        let flow = link.flow(group, .replication)
                        link.enqueue(out, payload: payload, in: flow, now: now)
                        if flow.unsentBytes > backpressureBytes && link.connection != nil { congest(group) }
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
                link.enqueue(out, payload: payload, in: flow, now: now)
                if flow.unsentBytes > backpressureBytes && link.connection != nil { congest(group) }
            } else {
                if permanent { link.refused += 1 } else { link.dropped += 1 }
                status = config.mutations.contains(.dropReportedQueued) ? .ok : .queueFull
            }
        case .noMaster, .unroutable:
            status = .unroutable
            counters.unroutable += 1
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
        guard site > 0, let link = membership.links[site], !link.removed else { return .unroutable }
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

    /// Whether a data frame of the peer (MESSAGE or CHANNEL, numbered `sequence` in its flow) is to be handled:
    /// false for one this broker handled before a reconnect (the peer had no ack for it and sent it again).
    /// Either way it is counted for the flow's credit. A new one's group index must have been bound on this
    /// connection (the delivery checks that); any index is checked against the limit before it sizes anything.
    @inline(__always)
    func isNew(_ index: UInt32, _ trafficClass: TrafficClass, _ sequence: UInt32, size: Int,
               on link: PeerLink) throws(WireError) -> Bool {
        guard index >= 1, index <= Wire.maxGroupIndex else {
            throw .malformed(type: trafficClass == .replication ? .message : .channel,
                             reason: "group index \(index) is outside 1...\(Wire.maxGroupIndex)")
        }
        let id = PeerFlow.id(group: index, trafficClass)
        guard link.credit.received(flow: id, sequence: sequence, bytes: size, batch: creditBatch) else {
            link.duplicates += 1
            return false
        }
        return true
    }

    /// A peer's MESSAGE: labelled with the link's site (not what the frame claims) and handed over.
    func deliver(fromPeer link: PeerLink, _ header: MessageHeader,
                 payload: UnsafeRawBufferPointer) throws(WireError) {
        var bound = link.remoteGroups[header.group]
        if bound == nil { bound = try boundGroup(link, header.group, .message) }
        link.messagesReceived += 1
        guard let group = bound else { return }
        link.bytesReceived += payload.count
        guard header.destination == SiteID.broadcast || header.destination == config.siteID else {
            counters.misrouted += 1
            return
        }
        var out = header
        out.group = 0
        out.source = link.siteID
        out.sequence = 0
        deliverLocally(group, out, payload: payload)
    }
}
