// A flow: one group's data of one traffic class on one peer link (PROTOCOL.md, "Flow control"). Its frames
// wait in its own queue until the link's scheduler moves them to the wire: control first, then the flows that
// have window left, in turn, a quantum of bytes each (deficit round robin). The window is what the peer
// granted: it starts at the window the peer announced in HELLO, shrinks by every frame sent, and grows by the
// peer's CREDIT frames, which it sends as that group's receiver (or channel subscriber) drains. A flow out of
// window waits, and its group's local producers pause at the queue's mark: other groups keep flowing.
import BrokerWire

final class PeerFlow {
    let group: Group
    let trafficClass: TrafficClass
    /// Whole frames, oldest first. Never partly written: the scheduler moves whole frames to the wire.
    let queue = ByteBuffer(capacity: 4096)
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-ipc-builds, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    /// Bytes the peer lets this flow send now; may go below 0 by part of one frame (a frame is sent whole
    /// while any window is left, so a frame larger than the window still goes).
    @exclusivity(unchecked) var window: Int
    /// Deficit round robin: bytes this flow may still move in its current turn.
    @exclusivity(unchecked) var deficit = 0
    @exclusivity(unchecked) var inTurn = false
    /// In the link's list of flows to serve.
    @exclusivity(unchecked) var isReady = false
    @exclusivity(unchecked) var messagesSent = 0
    @exclusivity(unchecked) var bytesSent = 0
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

    /// Whether the scheduler may move a frame now.
    @inline(__always)
    var canSend: Bool { window > 0 && !queue.isEmpty }
}

/// What a link's receiving side owes a flow of the peer: the bytes of its data frames handled here and not yet
/// credited back. Credit goes back in batches of a sixteenth of the window, and only while the group's
/// receiver (or the channel's subscribers) holds no more than the backpressure mark: a slow receiver so stops
/// its group's senders at their own site, while the link keeps being read for every other flow.
struct CreditLedger {
    /// Unreturned bytes by flow id (the peer's group index and class).
    private(set) var owed: [Int] = []
    /// Flows owed at least a batch, in the order they got there.
    private(set) var due: [Int] = []
    /// Frames and bytes received per flow id, kept across connections (for stats).
    private(set) var framesReceived: [Int] = []
    private(set) var bytesReceived: [Int] = []

    /// Counts a data frame of `size` bytes of the peer's flow `id`.
    @inline(__always)
    mutating func received(flow id: Int, bytes size: Int, batch: Int) {
        if id >= owed.count { owed.append(contentsOf: repeatElement(0, count: id + 1 - owed.count)) }
        if id >= framesReceived.count {
            framesReceived.append(contentsOf: repeatElement(0, count: id + 1 - framesReceived.count))
            bytesReceived.append(contentsOf: repeatElement(0, count: id + 1 - bytesReceived.count))
        }
        framesReceived[id] += 1
        bytesReceived[id] += size
        let before = owed[id]
        owed[id] = before + size
        if before < batch && before + size >= batch { due.append(id) }
    }

    /// Takes what flow `id` is owed (it leaves the due list).
    mutating func take(dueAt position: Int) -> (id: Int, bytes: Int) {
        let id = due.remove(at: position)
        defer { owed[id] = 0 }
        return (id, owed[id])
    }

    /// Forgets a flow (its group index was bound anew to another group: the old flow's credit is void).
    mutating func forget(group index: UInt32) {
        for trafficClass in TrafficClass.allCases {
            let id = PeerFlow.id(group: index, trafficClass)
            if id < framesReceived.count {
                framesReceived[id] = 0
                bytesReceived[id] = 0
            }
            guard id < owed.count else { continue }
            owed[id] = 0
            due.removeAll { $0 == id }
        }
    }

    func owed(flow id: Int) -> Int { id < owed.count ? owed[id] : 0 }
    func received(flow id: Int) -> (frames: Int, bytes: Int) {
        id < framesReceived.count ? (framesReceived[id], bytesReceived[id]) : (0, 0)
    }

    /// A new connection: the peer's flows start again from its window.
    mutating func reset() {
        owed.removeAll(keepingCapacity: true)
        due.removeAll(keepingCapacity: true)
    }
}
