// In-memory connections. A stream carries bytes one way, first in first out, each write arriving after its
// delay (never before an earlier write: order within a connection is TCP's), into a receive buffer of bounded
// size (a writer finds no room once in flight and unread bytes reach the capacity, like a full socket). A
// partition holds a stream's bytes until it heals. A connection ends with FIN (the reader sees what was sent,
// then the end) or a reset (the reader sees an error; what was in flight is lost).

final class SimStream {
    private var inFlight: [(at: SimTime, bytes: [UInt8])] = []
    private var inFlightBytes = 0
    private var arrived: [UInt8] = []
    private var readOffset = 0
    private var lastArrival: SimTime = 0
    /// The writer closed: the reader sees the end after every byte sent.
    private(set) var finished = false
    private var finishAt: SimTime = 0
    /// The connection was reset: the reader sees an error.
    private(set) var wasReset = false
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    var unread: Int { arrived.count - readOffset }
    var room: Int { max(0, capacity - inFlightBytes - unread) }
    var isIdle: Bool { inFlight.isEmpty && unread == 0 }

    /// Writes up to `room` bytes of `bytes`, arriving after `delay`; returns how many.
    func write(_ bytes: UnsafeRawBufferPointer, now: SimTime, delay: SimTime) -> Int {
        guard !finished, !wasReset else { return 0 }
        let count = min(bytes.count, room)
        guard count > 0 else { return 0 }
        lastArrival = max(lastArrival, now + delay)
        inFlight.append((lastArrival, Array(bytes[..<count])))
        inFlightBytes += count
        return count
    }

    func finish(now: SimTime, delay: SimTime) {
        guard !finished else { return }
        finished = true
        finishAt = max(lastArrival, now + delay)
    }

    func reset() {
        wasReset = true
        inFlight.removeAll()
        inFlightBytes = 0
        arrived.removeAll()
        readOffset = 0
    }

    /// Moves what has arrived by `now` into the receive buffer (nothing while `held`: a partition).
    func advance(now: SimTime, held: Bool) {
        guard !held else { return }
        var taken = 0
        while taken < inFlight.count, inFlight[taken].at <= now {
            arrived.append(contentsOf: inFlight[taken].bytes)
            inFlightBytes -= inFlight[taken].bytes.count
            taken += 1
        }
        if taken > 0 { inFlight.removeFirst(taken) }
    }

    /// Whether the reader has seen everything and the end.
    func atEnd(now: SimTime) -> Bool { finished && inFlight.isEmpty && unread == 0 && now >= finishAt }

    /// Copies up to `into.count` unread bytes; returns how many.
    func read(into buffer: UnsafeMutableRawBufferPointer, limit: Int = .max) -> Int {
        let count = min(buffer.count, unread, limit)
        guard count > 0 else { return 0 }
        arrived.withUnsafeBytes { all in
            buffer.baseAddress!.copyMemory(from: all.baseAddress! + readOffset, byteCount: count)
        }
        readOffset += count
        if readOffset == arrived.count {
            arrived.removeAll(keepingCapacity: true)
            readOffset = 0
        } else if readOffset > 1 << 20 {
            arrived.removeFirst(readOffset)
            readOffset = 0
        }
        return count
    }
}

/// Which process an end of a connection belongs to.
enum SimOwner: Equatable {
    case broker(Int32)
    case client(Int)
}

/// A connection between two ends: `a` dialled (or is the client), `b` accepted (a broker).
final class SimConnection {
    let a: SimOwner
    let b: SimOwner
    let aToB: SimStream
    let bToA: SimStream
    /// One-way delay of this connection (a peer link's latency; 0 for a local socket).
    let delay: SimTime

    init(a: SimOwner, b: SimOwner, capacity: Int, delay: SimTime) {
        self.a = a
        self.b = b
        aToB = SimStream(capacity: capacity)
        bToA = SimStream(capacity: capacity)
        self.delay = delay
    }

    func outgoing(from side: SimOwner) -> SimStream { side == a ? aToB : bToA }
    func incoming(to side: SimOwner) -> SimStream { side == a ? bToA : aToB }

    /// Between two sites (held while they are partitioned).
    var sites: (Int32, Int32)? {
        guard case .broker(let x) = a, case .broker(let y) = b else { return nil }
        return (x, y)
    }
}
