// Application channels (FAQ Q4) and forwarding to the master (FAQ Q1). A channel message goes to one
// subscriber of that channel at its destination site (round-robin); requests are answered by replies that
// find their way back to the requesting client by (site, client id); what cannot be delivered comes back to
// the sender as a CHANNEL_RESULT (noSubscriber, noMaster, unroutable, queueFull). Destination -3 resolves, at
// send time, to the site last announced as the group's master; routing is the one decision messages use
// (Broker.routeDecision), and a channel has no broadcast. Channel traffic is off the replication hot
// path: frames are built as arrays.
import BrokerWire

/// The subscribers of one channel in one group.
final class ChannelSubscribers {
    var clients: [ClientSession] = []
    var next = 0

    /// The next subscriber in turn, nil when there is none (closing clients unsubscribe themselves).
    func pick() -> ClientSession? {
        guard !clients.isEmpty else { return nil }
        next = next % clients.count
        defer { next += 1 }
        return clients[next]
    }
}

extension Core {
    func subscribe(_ client: ClientSession, to channel: String) {
        guard let group = client.group else { return }
        let subscribers = group.channels[channel] ?? ChannelSubscribers()
        group.channels[channel] = subscribers
        if !subscribers.clients.contains(where: { $0 === client }) { subscribers.clients.append(client) }
        logger.debug("channel subscription", ["client.id": "\(client.clientID)", "group": group.name, "channel": channel])
    }

    func unsubscribeAll(_ client: ClientSession) {
        guard let group = client.group else { return }
        for subscribers in group.channels.values { subscribers.clients.removeAll { $0 === client } }
    }

    /// A channel frame from a local client.
    func routeChannel(from client: ClientSession, _ frame: ChannelFrame) {
        guard let group = client.group else { return }
        var out = frame
        out.source = config.siteID
        switch frame.kind {
        case .message: counters.channelMessages += 1
        case .request: counters.channelRequests += 1
        case .reply: counters.channelReplies += 1
        }
        if frame.kind != .reply { out.requester = client.clientID }
        let link: PeerLink
        switch routeDecision(group, frame.destination) {
        case .local(let site):
            out.destination = site
            return deliverChannel(group, out)
        case .peer(let peer): link = peer
        case .noMaster: return channelResult(.noMaster, for: out, toSite: config.siteID)
        case .broadcast, .unroutable: return channelResult(.unroutable, for: out, toSite: config.siteID)
        }
        out.destination = link.siteID
        out.group = group.index
        let bytes = FrameParser.encode(.channel, body: out.body)
        guard link.hasRoom(for: bytes.count) else { return channelResult(.queueFull, for: out, toSite: config.siteID) }
        let flow = link.flow(group, .channel)
        link.enqueue(frame: bytes, in: flow, now: now)
        if flow.unsentBytes > backpressureBytes && link.connection != nil { congest(group) }
    }

    /// A channel frame from a peer: labelled with the link's site.
    func channelFromPeer(_ link: PeerLink, _ frame: ChannelFrame) throws(WireError) {
        guard let group = try boundGroup(link, frame.group, .channel) else { return }
        guard frame.destination == config.siteID else {
            counters.misrouted += 1
            return
        }
        var local = frame
        local.source = link.siteID
        deliverChannel(group, local)
    }

    /// Hands a channel frame that reached its destination site to a subscriber, or a reply to its requester.
    func deliverChannel(_ group: Group, _ frame: ChannelFrame) {
        var local = frame
        local.group = 0
        if frame.kind == .reply {
            guard let requester = clients.byID[frame.requester], requester.group === group else {
                counters.channelOrphanReplies += 1
                return
            }
            requester.send(.channel, body: local.body)
            return
        }
        guard let subscriber = group.channels[frame.channel]?.pick() else {
            counters.channelNoSubscriber += 1
            return channelResult(.noSubscriber, for: frame, toSite: frame.source)
        }
        subscriber.send(.channel, body: local.body)
        if frame.kind == .message { channelResult(.delivered, for: frame, toSite: frame.source) }
    }

    /// Sends the outcome of `frame` to its requesting client at `site`.
    func channelResult(_ status: ChannelStatus, for frame: ChannelFrame, toSite site: Int32) {
        let result = ChannelResultFrame(requestID: frame.requestID, requester: frame.requester, status: status)
        if site == config.siteID {
            clients.byID[frame.requester]?.send(.channelResult, body: result.body)
        } else if let link = membership.links[site] {
            link.enqueueControl(FrameParser.encode(.channelResult, body: result.body))
        }
    }

    /// A result coming back from a peer for one of our clients.
    func channelResultFromPeer(_ frame: ChannelResultFrame) {
        clients.byID[frame.requester]?.send(.channelResult, body: frame.body)
    }
}
