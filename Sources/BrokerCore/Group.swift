// A replication group on this broker: its index on peer links, the client holding the receiver role,
// the standbys in the order they asked, and a bounded queue of messages waiting for a receiver.
import BrokerWire

final class Group {
    let name: String
    /// This broker's index for the group, sent in GROUP_BIND and MESSAGE frames on peer links.
    let index: UInt32
    @Borrowable var receiver: ClientSession?
    var standbys: [ClientSession] = []
    /// MESSAGE frames, ready for a client, that arrived while no client held the receiver role.
    let pending = FrameQueue(capacity: 4096)
    var pendingMessages = 0
    var pendingPayloadBytes = 0
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-builds ipc, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) var delivered = 0
    var dropped = 0
    /// The master site as last announced here or by a peer; 0 when none is known.
    var master: Int32 = 0
    /// Per peer link (by `PeerLink.index`): the LSN that site has acknowledged as durable.
    var ackedLSN: [LSN]
    /// Application channels: subscribers by channel name.
    var channels: [String: ChannelSubscribers] = [:]
    /// PERMANENT sends of local clients waiting for their ack policy.
    var pendingAcks: [PendingAck] = []
    /// PERMANENT sends with an LSN and an ack policy: time from the send to the acks the policy asks for (sends
    /// that time out are not in it; they are `perm_ack_failures`).
    var ackWait = LatencyHistogram()
    /// Registered local clients of the group.
    var clientCount = 0
    /// A queue of the group passed the backpressure mark (`Broker.congest`); checked again every pass.
    @exclusivity(unchecked) var congested = false
    /// Its local producers' sockets are out of epoll's read interest.
    var producersPaused = false
    /// A producer holds frames it read after the group passed the mark (they are handled on resuming).
    var producerHoldsInput = false
    /// Whether the peers were last told that a client holds the receiver role here (PEER_RECEIVER).
    var receiverAnnounced = false
    /// When the group was last seen idle (no client, nothing queued); 0 while in use.
    var idleSince: UInt64 = 0

    init(name: String, index: UInt32, peerCount: Int) {
        self.name = name
        self.index = index
        ackedLSN = Array(repeating: .zero, count: peerCount)
        pendingAcks.reserveCapacity(256)
    }

    /// How many peer sites are durable at or past `lsn`.
    func sitesDurable(at lsn: LSN) -> Int {
        var count = 0
        for acked in ackedLSN where acked >= lsn { count += 1 }
        return count
    }

    var bindFrame: [UInt8] { FrameParser.encode(.groupBind, body: GroupBindFrame(group: index, name: name).body) }
    var masterFrame: [UInt8] { FrameParser.encode(.peerMaster, body: MasterFrame(group: index, siteID: master).peerBody) }
    var receiverFrame: [UInt8] {
        FrameParser.encode(.peerReceiver, body: PeerReceiverFrame(group: index, present: receiverAnnounced).body)
    }
    /// What a link coming up learns of the group: its index, its master if known, and that it has a receiver here.
    var linkUpFrames: [UInt8] {
        bindFrame + (master == 0 ? [] : masterFrame) + (receiverAnnounced ? receiverFrame : [])
    }

    /// No client and nothing queued: the group may be released (after the grace period).
    var isIdle: Bool {
        clientCount == 0 && receiver == nil && standbys.isEmpty && pending.isEmpty && pendingAcks.isEmpty
            && channels.values.allSatisfy { $0.clients.isEmpty }
    }

    /// The next standby still connected, removed from the standby list.
    func takeNextStandby() -> ClientSession? {
        while !standbys.isEmpty {
            let next = standbys.removeFirst()
            if !next.isClosed { return next }
        }
        return nil
    }
}

/// A PERMANENT send that waits until `required` other sites acknowledge `lsn`, or `deadline` passes.
struct PendingAck {
    let client: ClientSession
    let sequence: UInt64
    let lsn: LSN
    let required: Int
    let deadline: UInt64
    /// When the send came (for the ack-wait histogram).
    let sentAt: UInt64
}
