// The one link to a peer site: its queue of frames (kept across reconnects, bounded), the active
// connection when there is one, the dial attempt in progress, backoff, liveness times and counters.
import BrokerSystem
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
    let queue = FrameQueue(capacity: 256 << 10)
    let queueLimit: Int
    var connection: PeerConnection?
    var dialing: PeerConnection?
    var remoteIncarnation: UInt64 = 0
    /// Groups by the peer's index, learnt from GROUP_BIND on the current connection. A group released here
    /// (or refused for want of room) keeps its name in `remoteGroupNames` and is bound again on its next frame.
    var remoteGroups: [UInt32: Group] = [:]
    var remoteGroupNames: [UInt32: String] = [:]

    var everUp = false
    var failedSinceUp = false
    var nextDialAt: UInt64 = 0
    var backoffMilliseconds = PeerLink.minimumBackoff
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-ipc-builds, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) var lastHeard: UInt64 = 0
    var lastSent: UInt64 = 0

    @exclusivity(unchecked) var messagesSent = 0
    @exclusivity(unchecked) var bytesSent = 0
    @exclusivity(unchecked) var messagesReceived = 0
    @exclusivity(unchecked) var bytesReceived = 0
    var dropped = 0
    var refused = 0
    var reconnects = 0

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
    func hasRoom(for size: Int) -> Bool { queue.isEmpty || queue.byteCount + size <= queueLimit }

    /// Queues a MESSAGE (the caller checked room) and schedules a write.
    func enqueue(_ header: MessageHeader, payload: UnsafeRawBufferPointer, loop: EventLoop) {
        header.append(payload: payload, to: queue.buffer)
        messagesSent += 1
        bytesSent += payload.count
        connection?.scheduleFlush()
    }

    /// Queues a control frame (GROUP_BIND, HEARTBEAT) at the end.
    func enqueueControl(_ frame: [UInt8], loop: EventLoop) {
        queue.buffer.append(frame)
        connection?.scheduleFlush()
    }

    /// Schedules the next dial after a failure: capped exponential backoff with +-25% jitter.
    func scheduleRedial(now: UInt64) {
        let jitter = Double.random(in: 0.75...1.25)
        nextDialAt = now + UInt64(Double(backoffMilliseconds) * jitter * 1_000_000)
        backoffMilliseconds = min(backoffMilliseconds * 2, Self.maximumBackoff)
    }
}
