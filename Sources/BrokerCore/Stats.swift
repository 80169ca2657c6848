// The stats document served on the admin socket: JSON with snake_case keys, the same shape
// `repbroker stats --json` prints. Payload bytes (control + rec) are counted, not frame bytes.
import BrokerWire

public struct BrokerStats: Codable, Sendable {
    public var siteID: Int32
    public var pid: Int32
    public var uptimeMilliseconds: UInt64
    public var peers: [PeerStats]
    public var clients: [ClientStats]
    public var groups: [GroupStats]
    public var totals: TotalStats

    enum CodingKeys: String, CodingKey {
        case siteID = "site_id", pid, uptimeMilliseconds = "uptime_ms", peers, clients, groups, totals
    }
}

public struct PeerStats: Codable, Sendable {
    public var siteID: Int32
    public var address: String
    public var origin: PeerOrigin
    public var state: PeerState
    public var messagesSent: Int
    public var bytesSent: Int
    public var messagesReceived: Int
    public var bytesReceived: Int
    public var queuedBytes: Int
    public var dropped: Int
    public var refused: Int
    public var reconnects: Int
    /// Frames sent again on a new connection because the peer had not acknowledged them.
    public var resent: Int
    /// Frames the peer sent again that this broker had handled already, dropped as duplicates.
    public var duplicates: Int
    public var millisecondsSinceHeard: UInt64?
    /// Per group and traffic class on this link (PROTOCOL.md, "Flow control").
    public var flows: [FlowStats]
    /// The link's security once it has been up: "TLSv1.3 <cipher>" or "plain".
    public var tls: String?
    /// Round trips of heartbeat probes (absent from a broker before they existed).
    public var rtt: HistogramStats?
    /// Time from enqueue to the socket write, sampled one frame at a time.
    public var timeQueued: HistogramStats?
    /// The protocol version the link speaks once it has been up (the highest both ends speak).
    public var protocolVersion: Int?

    enum CodingKeys: String, CodingKey {
        case siteID = "site_id", address, origin, state, messagesSent = "msgs_sent", bytesSent = "bytes_sent"
        case messagesReceived = "msgs_received", bytesReceived = "bytes_received", queuedBytes = "queued_bytes"
        case dropped, refused, reconnects, resent, duplicates, millisecondsSinceHeard = "ms_since_heard", flows, tls
        case rtt, timeQueued = "time_queued", protocolVersion = "protocol"
    }
}

/// One flow of a peer link, both ways. Frame bytes (headers included), as windows and credit count them.
public struct FlowStats: Codable, Sendable {
    public var group: String
    /// "replication" or "channel".
    public var trafficClass: String
    /// Frames waiting here to be sent to the peer.
    public var queuedBytes: Int
    /// Frames sent and not yet acknowledged by the peer (kept to be sent again after a reconnect).
    public var unackedBytes: Int
    /// What the peer lets this broker send now (nil: nothing sent to it yet on this flow).
    public var window: Int?
    /// Bytes received from the peer and not yet credited back.
    public var owed: Int
    /// The group's local producers are paused (a queue of the group is over the mark).
    public var paused: Bool
    public var framesSent: Int
    public var bytesSent: Int
    public var framesReceived: Int
    public var bytesReceived: Int
    /// Times the window ran out with frames queued.
    public var stalls: Int

    enum CodingKeys: String, CodingKey {
        case group, trafficClass = "class", queuedBytes = "queued_bytes", unackedBytes = "unacked_bytes", window, owed, paused
        case framesSent = "frames_sent", bytesSent = "bytes_sent", framesReceived = "frames_received"
        case bytesReceived = "bytes_received", stalls
    }
}

public struct ClientStats: Codable, Sendable {
    public var id: UInt32
    public var pid: Int32
    public var name: String
    public var group: String
    public var roles: [String]
    public var transport: String
    public var messagesSent: Int
    public var bytesSent: Int
    public var messagesReceived: Int
    public var bytesReceived: Int
    public var queuedBytes: Int
    public var dropped: Int
    public var ackPolicy: String
    public var permanentAcked: Int
    public var permanentFailed: Int
    /// The broker takes none of this client's messages for now: it produces for a congested group.
    public var paused: Bool
    /// Shared-memory clients: each ring's size and the bytes in use in each direction.
    public var ringBytes: Int?
    public var ringToBrokerUsed: Int?
    public var ringToClientUsed: Int?
    /// The protocol version the client is served at.
    public var protocolVersion: Int?

    enum CodingKeys: String, CodingKey {
        case id, pid, name, group, roles, transport, messagesSent = "msgs_sent", bytesSent = "bytes_sent"
        case messagesReceived = "msgs_received", bytesReceived = "bytes_received", queuedBytes = "queued_bytes"
        case dropped, ackPolicy = "ack_policy", permanentAcked = "perm_acked", permanentFailed = "perm_failed", paused
        case ringBytes = "ring_bytes", ringToBrokerUsed = "ring_to_broker_used", ringToClientUsed = "ring_to_client_used"
        case protocolVersion = "protocol"
    }
}

public struct GroupStats: Codable, Sendable {
    public var name: String
    public var receiverClient: UInt32?
    public var standbys: Int
    public var delivered: Int
    public var pendingMessages: Int
    public var dropped: Int
    /// The master site as last announced; 0 when none is known.
    public var master: Int32
    public var waitingForAcks: Int
    /// PERMANENT sends: time from the send to the acks their policy asks for.
    public var ackWait: HistogramStats?

    enum CodingKeys: String, CodingKey {
        case name, receiverClient = "receiver_client", standbys, delivered, pendingMessages = "pending_msgs", dropped
        case master, waitingForAcks = "waiting_for_acks", ackWait = "ack_wait"
    }
}

public struct TotalStats: Codable, Sendable {
    public var messagesRouted: Int
    public var messagesSentToPeers: Int
    public var messagesReceivedFromPeers: Int
    public var messagesDelivered: Int
    public var dropped: Int
    public var refused: Int
    public var unroutable: Int
    public var misrouted: Int
    public var badFrames: Int
    public var clientsConnected: Int
    public var clientsRefused: Int
    /// accept() failures on any listener (out of descriptors or memory, connections aborted before accept).
    public var acceptFailures: Int
    /// Groups refused for want of a slot (--max-groups): local REGISTERs, peer GROUP_BINDs and peer frames of
    /// a refused group.
    public var groupsRefused: Int
    /// Groups released after their grace period with no client and nothing queued.
    public var groupsReleased: Int
    public var peersConnected: Int
    public var acksReceived: Int
    public var permanentAcked: Int
    public var permanentAckFailures: Int
    public var channelMessages: Int
    public var channelRequests: Int
    public var channelReplies: Int
    public var channelNoSubscriber: Int
    public var channelTimeouts: Int
    /// Peer connections refused for their TLS: handshakes failed, certificates refused, TLS on one end only.
    public var tlsFailures: Int

    enum CodingKeys: String, CodingKey {
        case channelMessages = "channel_msgs", channelRequests = "channel_requests", channelReplies = "channel_replies"
        case channelNoSubscriber = "channel_no_subscriber", channelTimeouts = "channel_timeouts"
        case messagesRouted = "msgs_routed", messagesSentToPeers = "msgs_sent_to_peers"
        case messagesReceivedFromPeers = "msgs_received_from_peers", messagesDelivered = "msgs_delivered"
        case dropped, refused, unroutable, misrouted, badFrames = "bad_frames"
        case clientsConnected = "clients_connected", clientsRefused = "clients_refused"
        case acceptFailures = "accept_failures", groupsRefused = "groups_refused", groupsReleased = "groups_released"
        case peersConnected = "peers_connected", tlsFailures = "tls_failures"
        case acksReceived = "acks_received", permanentAcked = "perm_acked", permanentAckFailures = "perm_ack_failures"
    }
}

extension Core {
    /// Every flow of `link` that has sent or received, by group name and class.
    func flowStats(_ link: PeerLink) -> [FlowStats] {
        let remoteIndex = Dictionary(link.remoteGroupNames.map { ($0.value, $0.key) }, uniquingKeysWith: max)
        var rows: [FlowStats] = []
        for group in groups.list.sorted(by: { $0.name < $1.name }) {
            for trafficClass in TrafficClass.allCases {
                let sendID = PeerFlow.id(group: group.index, trafficClass)
                let flow = sendID < link.flows.count ? link.flows[sendID] : nil
                let receiveID = remoteIndex[group.name].map { PeerFlow.id(group: $0, trafficClass) }
                let received = receiveID.map { link.credit.received(flow: $0) } ?? (frames: 0, bytes: 0)
                guard flow != nil || received.frames > 0 else { continue }
                rows.append(FlowStats(
                    group: group.name, trafficClass: "\(trafficClass)", queuedBytes: flow?.unsentBytes ?? 0,
                    unackedBytes: flow?.unackedBytes ?? 0,
                    window: flow?.window, owed: receiveID.map { link.credit.owed(flow: $0) } ?? 0,
                    paused: group.producersPaused, framesSent: flow?.messagesSent ?? 0, bytesSent: flow?.bytesSent ?? 0,
                    framesReceived: received.frames, bytesReceived: received.bytes, stalls: flow?.stalls ?? 0))
            }
        }
        return rows
    }

    /// A snapshot of every counter; `pid` and `acceptFailures` are the shell's.
    public func stats(pid: Int32, acceptFailures: Int) -> BrokerStats {
        let peers = membership.linkList.filter { !$0.removed }.map { link in
            PeerStats(
                siteID: link.siteID, address: link.address?.text ?? "-", origin: link.origin, state: link.state,
                messagesSent: link.messagesSent, bytesSent: link.bytesSent,
                messagesReceived: link.messagesReceived, bytesReceived: link.bytesReceived,
                queuedBytes: link.queuedBytes, dropped: link.dropped, refused: link.refused,
                reconnects: link.reconnects, resent: link.resent, duplicates: link.duplicates,
                millisecondsSinceHeard: link.everUp ? (now &- link.lastHeard) / 1_000_000 : nil,
                flows: flowStats(link), tls: link.everUp ? link.security : nil,
                rtt: link.everUp && link.protocolVersion < 6 ? nil : link.roundTrips.stats(now: now),
                timeQueued: link.timeQueued.stats(now: now), protocolVersion: link.everUp ? Int(link.protocolVersion) : nil)
        }
        let clientList = clients.byID.values.filter { $0.isRegistered }.sorted { $0.clientID < $1.clientID }.map { client in
            var roles: [String] = []
            if client.registration?.roles.contains(.sender) == true { roles.append("sender") }
            switch client.roleState {
            case .receiver: roles.append("receiver")
            case .standby: roles.append("standby")
            case .none: break
            }
            return ClientStats(
                id: client.clientID, pid: client.pid, name: client.name, group: client.group?.name ?? "",
                roles: roles, transport: client.transportName, messagesSent: client.messagesSent, bytesSent: client.bytesSent,
                messagesReceived: client.messagesReceived, bytesReceived: client.bytesReceived,
                queuedBytes: client.output.byteCount, dropped: client.dropped, ackPolicy: "\(client.ackPolicy)",
                permanentAcked: client.permanentAcked, permanentFailed: client.permanentFailed,
                paused: client.isPausedProducer,
                ringBytes: client.rings?.ringBytes, ringToBrokerUsed: client.rings?.reader.ring.usedBytes,
                ringToClientUsed: client.rings?.writer.ring.usedBytes, protocolVersion: Int(client.protocolVersion))
        }
        let groupStats = groups.list.map { group in
            GroupStats(name: group.name, receiverClient: group.receiver?.clientID, standbys: group.standbys.count,
                       delivered: group.delivered, pendingMessages: group.pendingMessages, dropped: group.dropped,
                       master: group.master, waitingForAcks: group.pendingAcks.count, ackWait: group.ackWait.stats(now: now))
        }
        let totals = TotalStats(
            messagesRouted: counters.routedMessages,
            messagesSentToPeers: membership.linkList.reduce(0) { $0 + $1.messagesSent },
            messagesReceivedFromPeers: membership.linkList.reduce(0) { $0 + $1.messagesReceived },
            messagesDelivered: groups.list.reduce(0) { $0 + $1.delivered },
            dropped: membership.linkList.reduce(0) { $0 + $1.dropped } + groups.list.reduce(0) { $0 + $1.dropped },
            refused: membership.linkList.reduce(0) { $0 + $1.refused },
            unroutable: counters.unroutable, misrouted: counters.misrouted, badFrames: counters.badFrames,
            clientsConnected: clientList.count, clientsRefused: counters.clientsRefused,
            acceptFailures: acceptFailures, groupsRefused: groups.refused, groupsReleased: groups.released,
            peersConnected: peers.filter { $0.state == .connected }.count,
            acksReceived: counters.acksReceived, permanentAcked: counters.permanentAcked,
            permanentAckFailures: counters.permanentAckFailures,
            channelMessages: counters.channelMessages, channelRequests: counters.channelRequests,
            channelReplies: counters.channelReplies, channelNoSubscriber: counters.channelNoSubscriber,
            channelTimeouts: counters.channelTimeouts, tlsFailures: counters.tlsFailures)
        return BrokerStats(siteID: config.siteID, pid: pid, uptimeMilliseconds: (now &- startedAt) / 1_000_000,
                           peers: peers, clients: clientList, groups: groupStats, totals: totals)
    }

    /// Peer links up and known (removed sites not counted), and local connections: for a status line.
    public var linkSummary: (peersUp: Int, peersKnown: Int, clients: Int) {
        var up = 0, known = 0
        for link in membership.linkList where !link.removed {
            known += 1
            if link.state == .connected { up += 1 }
        }
        return (up, known, clients.byID.count)
    }

    /// The group's sites as this broker knows them, itself included.
    public func sites() -> [SiteInfo] {
        var sites = membership.linkList.filter { !$0.removed }.map {
            SiteInfo(site_id: $0.siteID, address: $0.address?.text ?? "-", origin: $0.origin.rawValue, state: $0.state.rawValue)
        }
        sites.append(SiteInfo(site_id: config.siteID, address: config.listen ?? "-", origin: "self", state: "self"))
        return sites.sorted { $0.site_id < $1.site_id }
    }
}

/// One site, for the admin socket's `sites`.
public struct SiteInfo: Codable, Equatable, Sendable {
    public let site_id: Int32
    public let address: String
    public let origin: String
    public let state: String
}
