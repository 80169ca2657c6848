// The application's side of receiving. One thread receives at a time (another gets `invalidArgument`): it
// is the only consumer of the to-client ring, and without rings of the inbox. It reads records where they
// lie (receiveAll's views point into the ring until the callback returns). With nothing to read it spins a
// moment, then says it sleeps and blocks in poll on the ring's data doorbell (the broker rings it) and the
// client's receiver bell (the reader thread rings it: inbox frames, a changed connection, close).
// Nothing else waits for the receiving thread: send results and channel frames come by the socket to the
// reader thread, so a callback may send, PERMANENT included, and a slow callback delays only its own
// receiving.
import BrokerSystem
import BrokerWire
import CRepBrokerIPC
#if canImport(Glibc)
import Glibc
#endif

/// What the receiver takes: a message (its views valid during the call) or a site event.
enum ReceiverItem {
    case message(MessageView)
    case siteEvent(SiteEventFrame)
}

/// The receiving thread's own state (only the thread that holds `ClientCore.receiving` touches it).
final class ReceiverState {
    /// The rings being read; kept after the connection changed until the records published in them are read.
    var rings: ClientRingSide?
    /// `ClientCore.connectionEpoch` when `rings` was taken.
    var epoch = -1
    /// Without rings: a batch taken from the inbox, read in order.
    let batch = ByteBuffer(capacity: 64 << 10)
}

extension ClientCore {
    func nextEvent(timeout: Double?) throws(BrokerClientError) -> ClientEvent? {
        var event: ClientEvent?
        _ = try receiveItems(until: Self.deadline(timeout)) { item in
            switch item {
            case .message(let view):
                event = .message(ReceivedMessage(source: view.source, control: Array(view.control), rec: Array(view.rec),
                                                 lsn: view.lsn, flags: view.flags))
            case .siteEvent(let site):
                event = site.up ? .siteUp(site.siteID) : .siteDown(site.siteID)
            }
            return false
        }
        return event
    }

    /// Hands every message now waiting (waiting up to `timeout` for the first) to `body`, in place; site
    /// events are skipped. Returns how many messages.
    func receiveAll(timeout: Double?, _ body: (MessageView) -> Void) throws(BrokerClientError) -> Int {
        let deadline = Self.deadline(timeout)
        while true {
            var count = 0
            let items = try receiveItems(until: deadline) { item in
                if case .message(let view) = item {
                    body(view)
                    count += 1
                }
                return true
            }
            // Only site events came: wait on for a message.
            if count > 0 || items == 0 { return count }
        }
    }

    private static func deadline(_ timeout: Double?) -> UInt64? {
        timeout.map { Posix.monotonicNanoseconds() + UInt64(max(0, $0) * 1e9) }
    }

    /// Waits until `deadline` for the receiver's frames, then hands those there are to `handle` until it
    /// returns false. Returns how many it handed over (0: the deadline passed).
    private func receiveItems(until deadline: UInt64?, _ handle: (ReceiverItem) -> Bool) throws(BrokerClientError) -> Int {
        guard options.roles.contains(.receiver) else { throw .invalidArgument("client did not register as a receiver") }
        guard receiving.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            throw .invalidArgument("another thread is receiving on this client (one thread receives at a time)")
        }
        defer { receiving.store(false, ordering: .releasing) }
        while true {
            let handled = takeAvailable(handle)
            if handled > 0 { return handled }
            if closedFlag.load(ordering: .relaxed) { throw .closed }
            guard waitForFrames(until: deadline) else { return 0 }
        }
    }

    /// Hands over what is there now: the inbox's frames (they came before anything in newer rings), then
    /// the ring's records.
    private func takeAvailable(_ handle: (ReceiverItem) -> Bool) -> Int {
        let batch = receiver.batch
        if batch.isEmpty && inboxFrames.load(ordering: .relaxed) > 0 {
            state.withLock {
                batch.swapContents(with: inbox)
                inboxFrames.store(0, ordering: .relaxed)
                // A reader thread holding back for room reads on.
                state.broadcast()
            }
        }
        if !batch.isEmpty { return takeFromBatch(batch, handle) }
        guard let ringSide = currentRings() else { return 0 }
        return takeFromRing(ringSide, handle)
    }

    /// The rings to read: the current connection's, once those of an earlier one hold no more records.
    private func currentRings() -> ClientRingSide? {
        let epoch = connectionEpoch.load(ordering: .sequentiallyConsistent)
        if epoch != receiver.epoch {
            // What the broker published before the connection changed is good: it is read first.
            if let earlier = receiver.rings, !earlier.isCorrupt, earlier.hasRecords { return earlier }
            receiver.rings = state.withLock { rings }
            receiver.epoch = epoch
        }
        guard let ringSide = receiver.rings, !ringSide.isCorrupt else { return nil }
        return ringSide
    }

    /// Frames of an inbox batch (checked by the reader thread) to `handle`, consumed as they go.
    private func takeFromBatch(_ batch: ByteBuffer, _ handle: (ReceiverItem) -> Bool) -> Int {
        var handled = 0
        while let frame = try? FrameParser.next(in: batch.readable, maxMessage: Int.max - 64) {
            var goOn = true
            if frame.type == .message, let header = try? MessageHeader(body: frame.body) {
                goOn = handle(.message(MessageView(frame.body, header)))
            } else if let event = try? SiteEventFrame(body: frame.body) {
                goOn = handle(.siteEvent(event))
            }
            batch.consume(frame.totalSize)
            handled += 1
            if !goOn { break }
        }
        if batch.isEmpty { batch.shrinkIfIdle() }
        return handled
    }

    /// Records of the to-client ring to `handle`, in place. Each frame is parsed where it lies (every header
    /// field read once and checked before use); a message in parts is joined first. The ring's space goes
    /// back every 256 records and at the end. A corrupt ring ends the connection.
    private func takeFromRing(_ ringSide: ClientRingSide, _ handle: (ReceiverItem) -> Bool) -> Int {
        let reader = ringSide.reader
        let limit = ringSide.maxMessage
        let maxFrame = Wire.frameHeaderSize + Wire.messageHeaderSize + limit
        var handled = 0
        defer { ringSide.release() }
        do {
            while let record = try reader.next() {
                guard let whole = try ringSide.assembler.add(kind: record.kind, payload: record.payload, maxFrame: maxFrame)
                else { continue }
                guard let frame = try FrameParser.next(in: whole, maxMessage: limit), frame.totalSize == whole.count else {
                    throw RingError("a record is not exactly one frame")
                }
                handled += 1
                let goOn: Bool
                switch frame.type {
                case .message: goOn = handle(.message(MessageView(frame.body, try MessageHeader(body: frame.body))))
                case .siteEvent: goOn = handle(.siteEvent(try SiteEventFrame(body: frame.body)))
                default: throw WireError.unexpected(type: frame.type, state: "in the to-client ring")
                }
                if !goOn { break }
                if handled & 255 == 0 { ringSide.release() }
            }
        } catch {
            ringSide.isCorrupt = true
            abandonConnection(reason: "bad record in the ring from the broker: \(error)")
        }
        return handled
    }

    /// Waits for the receiver's frames, a changed connection or close, until `deadline`; false when it passed.
    /// Spins a moment first (records usually follow within microseconds while traffic flows), then says it
    /// sleeps, checks once more, and blocks in poll.
    private func waitForFrames(until deadline: UInt64?) -> Bool {
        let ringSide = receiver.rings.flatMap { $0.isCorrupt ? nil : $0 }
        let epoch = receiver.epoch
        if options.receiveSpin > 0 {
            let spinUntil = Posix.monotonicNanoseconds() + UInt64(options.receiveSpin * 1e9)
            var checks = 0
            while true {
                if ringSide?.hasRecords == true || inboxFrames.load(ordering: .relaxed) > 0
                    || connectionEpoch.load(ordering: .relaxed) != epoch || closedFlag.load(ordering: .relaxed) {
                    return true
                }
                rb_cpu_relax()
                checks += 1
                if checks & 31 == 0 {
                    if Posix.monotonicNanoseconds() >= spinUntil { break }
                    // More threads than cores (a broker, its clients): the one that brings the next message
                    // may need this core.
                    sched_yield()
                }
            }
        }
        // Seq_cst stores then loads, paired with the reader thread's and the broker's: either they see that
        // this thread sleeps, or it sees what they published.
        receiverSleeping.store(true, ordering: .sequentiallyConsistent)
        defer { receiverSleeping.store(false, ordering: .sequentiallyConsistent) }
        let ringAsleep = ringSide?.reader.prepareToSleep() ?? true
        defer { if ringAsleep { ringSide?.reader.awake() } }
        if !ringAsleep || inboxFrames.load(ordering: .sequentiallyConsistent) > 0
            || connectionEpoch.load(ordering: .sequentiallyConsistent) != epoch
            || closedFlag.load(ordering: .sequentiallyConsistent) {
            return true
        }
        var milliseconds: CInt = -1
        if let deadline {
            let now = Posix.monotonicNanoseconds()
            guard now < deadline else { return false }
            milliseconds = CInt(min((deadline - now + 999_999) / 1_000_000, 3_600_000))
        }
        let ready = rb_poll_two(receiverBell.descriptor, ringSide?.dataDoorbell.descriptor ?? -1, milliseconds)
        if ready > 0 {
            if ready & 1 != 0 { receiverBell.drain() }
            if ready & 2 != 0 { ringSide?.dataDoorbell.drain() }
            return true
        }
        return deadline.map { Posix.monotonicNanoseconds() < $0 } ?? true
    }
}

extension MessageView {
    /// A view of a checked MESSAGE body.
    init(_ body: UnsafeRawBufferPointer, _ header: MessageHeader) {
        let (control, rec) = MessageHeader.payload(of: body, header)
        self.init(source: header.source, control: control, rec: rec, lsn: header.lsn, flags: header.flags)
    }
}
