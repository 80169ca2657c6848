// A flow: one group's data of one traffic class on one peer link (PROTOCOL.md, "Flow control" and "Nothing
// lost on a reset"). Its frames wait in its own queue until the link's scheduler moves them to the wire:
// control first, then the flows that have window left, in turn, a quantum of bytes each (deficit round robin).
// The window is what the peer granted: it starts at the window the peer announced in HELLO, shrinks by every
// frame sent, and grows by the peer's CREDIT frames, which it sends as that group's receiver (or channel
// subscriber) drains. A flow out of window waits, and its group's local producers pause at the queue's mark:
// other groups keep flowing.
//
// A frame stays at the front of its queue after it is sent, numbered, until the peer acknowledges it (CREDIT's
// `acked`). So the queue is three regions, front to back: frames sent on this connection, frames sent on an
// earlier one and not acknowledged (sent again, first, on the next connection), frames not yet sent.
//   [0, wiredBytes)              moved to the wire on this connection
//   [0, unackedBytes)            numbered and not acknowledged (wiredBytes <= unackedBytes)
//   [unackedBytes, end)          never sent
import BrokerWire

final class PeerFlow {
    let group: Group
    let trafficClass: TrafficClass
    /// Whole frames, oldest first. Never partly written: the scheduler copies whole frames to the wire.
    let queue = ByteBuffer(capacity: 4096)
    /// Bytes at the front of `queue` moved to the wire on the current connection.
    var wiredBytes = 0
    /// Bytes at the front of `queue` sent (and numbered) on some connection and not yet acknowledged.
    var unackedBytes = 0
    /// Bytes the peer lets this flow send now; may go below 0 by part of one frame (a frame is sent whole
    /// while any window is left, so a frame larger than the window still goes).
    var window: Int
    /// Deficit round robin: bytes this flow may still move in its current turn.
    var deficit = 0
    var inTurn = false
    /// In the link's list of flows to serve.
    var isReady = false
    /// Frames and bytes sent the first time (not counting frames sent again after a reconnect).
    var messagesSent = 0
    var bytesSent = 0
    /// Frames ever queued (with `messagesSent`: the unsent ones are the last `framesQueued - messagesSent`).
    var framesQueued = 0
    /// Times the window ran out with frames still queued (the peer's receiver was slower than the producers).
    var stalls = 0

    init(group: Group, trafficClass: TrafficClass, window: Int) {
        self.group = group
        self.trafficClass = trafficClass
        self.window = window
    }

    /// The flow's index on its link: the group index and the class.
    static func id(group index: UInt32, _ trafficClass: TrafficClass) -> Int {
        Int(index) << 1 | Int(trafficClass.rawValue)
    }

    /// Bytes still to go on this connection: what the congestion mark looks at.
    @inline(__always)
    var unsentBytes: Int { queue.readableBytes - wiredBytes }

    /// Whether the scheduler may move a frame now.
    @inline(__always)
    var canSend: Bool { window > 0 && queue.readableBytes > wiredBytes }

    /// Where a data frame (MESSAGE or CHANNEL) carries its flow sequence number on a peer link: the body's
    /// `source` field, which a receiving broker replaces by the link's site anyway.
    static let sequenceOffset = Wire.frameHeaderSize + 4
}

/// Serial number arithmetic (RFC 1982) on 32-bit flow sequence numbers: `a` is at or before `b` when the
/// distance from `a` to `b` is under half the number space. A flow has far fewer frames in flight than that.
@inline(__always)
func sequence(_ a: UInt32, isAtOrBefore b: UInt32) -> Bool { Int32(bitPattern: b &- a) >= 0 }

/// The receiving side of a link, per flow of the peer: the bytes of its data frames handled here and not yet
/// credited back, and the last sequence number handled (a frame at or before it is a duplicate, sent again
/// after a reconnect). Credit goes back in batches of a sixteenth of the window, or on the next timer tick for
/// less, and only while the group's receiver (or the channel's subscribers) holds no more than the backpressure
/// mark: a slow receiver so stops its group's senders at their own site, while the link keeps being read for
/// every other flow. Each CREDIT carries the last sequence number handled: the cumulative acknowledgement.
struct CreditLedger {
    /// Unreturned bytes by flow id (the peer's group index and class).
    private(set) var owed: [Int] = []
    /// Flows owed credit now, in the order they got there.
    private(set) var due: [Int] = []
    private var isDue: [Bool] = []
    /// Flows that came to be owed something since the last tick (`dueAll` looks at these, not at every flow).
    private var owing: [Int] = []
    /// The last sequence number handled, by flow id; meaningful where `tracking` is set.
    private var handled: [UInt32] = []
    private var tracking: [Bool] = []
    /// Frames and bytes received per flow id, kept across connections (for stats).
    private(set) var framesReceived: [Int] = []
    private(set) var bytesReceived: [Int] = []

    private mutating func grow(to id: Int) {
        guard id >= owed.count else { return }
        let more = id + 1 - owed.count
        owed.append(contentsOf: repeatElement(0, count: more))
        isDue.append(contentsOf: repeatElement(false, count: more))
        handled.append(contentsOf: repeatElement(0, count: more))
        tracking.append(contentsOf: repeatElement(false, count: more))
        framesReceived.append(contentsOf: repeatElement(0, count: more))
        bytesReceived.append(contentsOf: repeatElement(0, count: more))
    }

    /// A data frame of `size` bytes of the peer's flow `id`, numbered `sequence`: counted for the flow's credit
    /// (a duplicate too: it took window). Returns whether it is new; it is then handled, and later ones must
    /// follow it. The first frame of a flow (or after `forget`) is new whatever its number.
    @inline(__always)
    mutating func received(flow id: Int, sequence number: UInt32, bytes size: Int, batch: Int) -> Bool {
        received(flow: id, bytes: size, batch: batch)
        if tracking[id] && sequence(number, isAtOrBefore: handled[id]) { return false }
        tracking[id] = true
        handled[id] = number
        return true
    }

    /// Counts `size` bytes of the peer's flow `id` for its credit.
    @inline(__always)
    mutating func received(flow id: Int, bytes size: Int, batch: Int) {
        grow(to: id)
        framesReceived[id] += 1
        bytesReceived[id] += size
        let before = owed[id]
        owed[id] = before + size
        if before == 0 { owing.append(id) }
        if before < batch && before + size >= batch { markDue(id) }
    }

    private mutating func markDue(_ id: Int) {
        guard !isDue[id] else { return }
        isDue[id] = true
        due.append(id)
    }

    /// Every flow owed anything is due (on the timer tick: a few frames are acknowledged without waiting for a
    /// batch, so the sender lets them go).
    mutating func dueAll() {
        for id in owing where owed[id] > 0 { markDue(id) }
        owing.removeAll(keepingCapacity: true)
    }

    /// Takes what flow `id` is owed (it leaves the due list), with the last sequence number handled.
    mutating func take(dueAt position: Int) -> (id: Int, bytes: Int, acked: UInt32) {
        let id = due.remove(at: position)
        isDue[id] = false
        defer { owed[id] = 0 }
        return (id, owed[id], handled[id])
    }

    /// Forgets a flow (its group index was bound anew to another group: the old flow's credit and numbers are void).
    mutating func forget(group index: UInt32) {
        for trafficClass in TrafficClass.allCases {
            let id = PeerFlow.id(group: index, trafficClass)
            guard id < owed.count else { continue }
            framesReceived[id] = 0
            bytesReceived[id] = 0
            owed[id] = 0
            tracking[id] = false
            if isDue[id] {
                isDue[id] = false
                due.removeAll { $0 == id }
            }
        }
    }

    func owed(flow id: Int) -> Int { id < owed.count ? owed[id] : 0 }

    /// The flows that are owed more than `limit` bytes (an audit: a peer sent beyond the window).
    func owing(limit: Int) -> [Int] { owed.indices.filter { owed[$0] > limit } }
    /// The last sequence number of flow `id` handled here, nil before its first frame.
    func lastHandled(flow id: Int) -> UInt32? { id < tracking.count && tracking[id] ? handled[id] : nil }
    func received(flow id: Int) -> (frames: Int, bytes: Int) {
        id < framesReceived.count ? (framesReceived[id], bytesReceived[id]) : (0, 0)
    }

    /// A new connection: the peer's flows start again from its window. The sequence numbers handled stay: the
    /// peer sends again what it has not seen acknowledged, and those frames are duplicates here.
    mutating func reset() {
        for id in owed.indices {
            owed[id] = 0
            isDue[id] = false
        }
        due.removeAll(keepingCapacity: true)
        owing.removeAll(keepingCapacity: true)
    }

    /// The peer restarted (another incarnation): its numbering starts again.
    mutating func forgetSequences() {
        for id in tracking.indices { tracking[id] = false }
    }
}
