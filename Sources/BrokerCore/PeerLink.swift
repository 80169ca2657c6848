// The one link to a peer site: its queues (kept across reconnects, bounded; PeerScheduler.swift decides what
// goes next), the active connection when there is one, the dial attempt in progress, backoff, liveness times
// and counters.
import BrokerWire

public enum PeerState: String, Codable, Sendable {
    /// `unresolved`: its host name did not resolve at the last try (retried with backoff).
    case connected, connecting, down, unresolved
}

/// How this broker came to know a site: from its configuration, because the site joined (or was joined)
/// through this broker, or told by another member.
public enum PeerOrigin: String, Codable, Sendable {
    case configured, joined, learned
}

final class PeerLink {
    let siteID: Int32
    /// Position in the broker's link list: the index of this site in per-group ack arrays.
    let index: Int
    /// Where to dial the site; nil while none is known (the site dials this broker).
    var address: PeerAddress?
    let origin: PeerOrigin
    /// Left the group for good: not dialled, not routed to, refused when it says HELLO.
    var removed = false
    /// Frames on their way to the socket, taken whole from `control` and the flows by the scheduler; short, so
    /// that a frame of another flow waits behind little. Its front frame may be partly written.
    let wire = FrameQueue(capacity: 64 << 10)
    /// Bytes at the wire's end that are copies of flow frames (a refill puts control frames first, then data),
    /// as many as the last refill put there; what is written goes from the front.
    var wireCopyBytes = 0
    /// Control frames: not flow-controlled, scheduled before any data.
    let control = FrameQueue(capacity: 4096)
    /// Data flows by `PeerFlow.id` (group index and class), made on first use.
    var flows: [PeerFlow?] = []
    /// Flows with frames queued and window left, served in turn from `readyCursor`.
    var ready: [PeerFlow] = []
    var readyCursor = 0
    /// Bytes queued in every flow (with `wire` and `control`: what `queueLimit` bounds).
    var flowBytes = 0
    let queueLimit: Int
    /// The window the peer announced in its HELLO: where each flow starts on a new connection.
    var peerWindow = Int(Wire.defaultFlowWindow)
    /// What this side owes the peer's flows, and the last of their frames it handled.
    var credit = CreditLedger()
    /// The last sequence number given to a frame of each of this side's flows, by flow id (PeerScheduler.swift).
    var lastSequence: [UInt32] = []
    /// Groups (by name) in which the peer site has a client holding the receiver role (its PEER_RECEIVER frames
    /// on the current connection).
    var receiverGroups: Set<String> = []
    var connection: PeerSession?
    var dialing: PeerSession?
    var remoteIncarnation: UInt64 = 0
    /// Groups by the peer's index, learnt from GROUP_BIND on the current connection. A group released here
    /// (or refused for want of room) keeps its name in `remoteGroupNames` and is bound again on its next frame.
    var remoteGroups: [UInt32: Group] = [:]
    var remoteGroupNames: [UInt32: String] = [:]

    var everUp = false
    var failedSinceUp = false
    var nextDialAt: UInt64 = 0
    var backoffMilliseconds = PeerLink.minimumBackoff
    /// Bytes came from the peer since the timers last ran.
    var heardSinceTick = false
    /// When the timers last found that bytes had come (for stats).
    var lastHeard: UInt64 = 0
    var lastSent: UInt64 = 0
    var liveness = Liveness()

    var messagesSent = 0
    var bytesSent = 0
    var messagesReceived = 0
    var bytesReceived = 0
    var dropped = 0
    /// Of `dropped`, frames sent to an incarnation of the peer that restarted before acknowledging them (the
    /// others were refused at a full queue, each with a SEND_RESULT saying so).
    var droppedAtRestart = 0
    var refused = 0
    var reconnects = 0
    /// "TLSv1.3 <cipher>" or "plain": the security of the connection that last became the link.
    var security = "plain"
    /// Frames sent again on a new connection because the peer had not acknowledged them.
    var resent = 0
    /// The protocol version of the connection that last became the link (PROTOCOL.md, "Versioning").
    var protocolVersion = Wire.protocolVersion
    /// Round trips of heartbeat probes (PROTOCOL.md, "Heartbeats and round trips").
    var roundTrips = LatencyHistogram()
    /// The timestamp of the probe awaiting its echo on the current connection (0: none), and when the last went.
    var probeSentAt: UInt64 = 0
    var lastProbeAt: UInt64 = 0
    /// Time from a data frame's enqueue to the write that puts its last byte in the socket, sampled: one frame
    /// at a time is followed (`queueTrace`).
    var timeQueued = LatencyHistogram()
    var queueTrace = QueueTrace()
    /// Bytes of the wire written to the socket, ever (positions for `queueTrace`).
    var wireWritten = 0
    /// Frames of the peer dropped here as already handled (it sent them again after a reconnect).
    var duplicates = 0

    static let minimumBackoff = 100
    static let maximumBackoff = 5000

    init(siteID: Int32, index: Int = 0, address: PeerAddress?, origin: PeerOrigin = .configured, queueLimit: Int) {
        self.siteID = siteID
        self.index = index
        self.origin = origin
        self.address = address
        self.queueLimit = queueLimit
    }

    var state: PeerState {
        if connection != nil { return .connected }
        if address?.failure != nil { return .unresolved }
        return failedSinceUp ? .down : .connecting
    }

    /// Whether a frame of `size` more bytes may be queued: it fits under the limit, or the queue is empty
    /// (so a message as large as the message limit always gets through an idle link).
    @inline(__always)
    func hasRoom(for size: Int) -> Bool {
        let queued = queuedBytes
        return queued == 0 || queued + size <= queueLimit
    }

    /// Bytes waiting for this peer: control, every flow, and what is on the wire besides copies of flow frames
    /// (a data frame stays in its flow until acknowledged: counted there once, not again while it is on the
    /// wire; a 48 MiB message once counted twice made a link with room drop the messages after it).
    @inline(__always)
    var queuedBytes: Int { wire.byteCount - min(wireCopyBytes, wire.byteCount) + control.byteCount + flowBytes }

    /// The flow of `group`'s `trafficClass` data, made on first use.
    @inline(__always)
    func flow(_ group: Group, _ trafficClass: TrafficClass) -> PeerFlow {
        let id = PeerFlow.id(group: group.index, trafficClass)
        if id < flows.count, let flow = flows[id] { return flow }
        return makeFlow(group, trafficClass, id: id)
    }

    private func makeFlow(_ group: Group, _ trafficClass: TrafficClass, id: Int) -> PeerFlow {
        if id >= flows.count { flows.append(contentsOf: repeatElement(nil, count: id + 1 - flows.count)) }
        let flow = PeerFlow(group: group, trafficClass: trafficClass, window: peerWindow)
        flows[id] = flow
        return flow
    }

    /// Schedules the next dial after a failure: capped exponential backoff with +-25% jitter (`random` is the
    /// core's, so a simulated run replays).
    func scheduleRedial(now: UInt64, random: inout CoreRandom) {
        let jitter = Double.random(in: 0.75...1.25, using: &random)
        nextDialAt = now + UInt64(Double(backoffMilliseconds) * jitter * 1_000_000)
        backoffMilliseconds = min(backoffMilliseconds * 2, Self.maximumBackoff)
    }
}

/// The data frame followed for the time-queued histogram: the `frame`-th frame queued in `flow`, queued at
/// `since`; once the scheduler copied it to the wire, `wireEnd` is where it ends in the link's written bytes.
struct QueueTrace {
    var flow: PeerFlow?
    var frame = 0
    var since: UInt64 = 0
    var wireEnd = -1

    init() {}

    init(flow: PeerFlow, frame: Int, since: UInt64) {
        self.flow = flow
        self.frame = frame
        self.since = since
    }
}

extension PeerLink {
    /// A frame was queued in `flow`: followed when no other is.
    @inline(__always)
    func traceQueued(_ flow: PeerFlow, now: UInt64) {
        flow.framesQueued += 1
        if queueTrace.flow == nil { queueTrace = QueueTrace(flow: flow, frame: flow.framesQueued, since: now) }
    }

    /// `count` bytes of the wire were written at `now`: the followed frame's time is recorded once written whole.
    @inline(__always)
    func wroteWire(_ count: Int, now: UInt64) {
        wireWritten += count
        if queueTrace.wireEnd >= 0 && wireWritten >= queueTrace.wireEnd {
            timeQueued.record(now &- queueTrace.since, now: now)
            queueTrace = QueueTrace()
        }
    }
}
