// The application's side of receiving: nextEvent takes one frame from the inbox; receiveAll takes the
// inbox's batch, or (with rings) drains the to-client ring itself and hands each message to its callback
// with no thread hop, copied once into a reused buffer. The reader thread fills the inbox when no
// application thread drains the ring, and wakes a blocked receiveAll when records arrive. A callback may
// send and wait (a PERMANENT send, a channel request): the wait then reads the ring on (see waitForBroker).
import BrokerSystem
import BrokerWire
#if canImport(Glibc)
import Glibc
#endif

extension ClientCore {
    /// Waits until the inbox has frames or `deadline` passes; false on timeout. Lock held.
    private func waitForInbox(deadline: UInt64?) throws(BrokerClientError) -> Bool {
        while inbox.isEmpty {
            if isClosed { throw BrokerClientError.closed }
            if !state.wait(untilNanoseconds: deadline) && inbox.isEmpty { return false }
        }
        return true
    }

    func nextEvent(timeout: Double?) throws(BrokerClientError) -> ClientEvent? {
        guard options.roles.contains(.receiver) else { throw .invalidArgument("client did not register as a receiver") }
        let deadline = timeout.map { Posix.monotonicNanoseconds() + UInt64(max(0, $0) * 1e9) }
        return try state.withLock { () throws(BrokerClientError) -> ClientEvent? in
            guard try waitForInbox(deadline: deadline) else { return nil }
            // The inbox holds only frames this client's reader checked and appended whole.
            guard let frame = try? FrameParser.next(in: inbox.readable, maxMessage: Int.max - 64) else {
                inbox.clear()
                return nil
            }
            defer {
                inbox.consume(frame.totalSize)
                state.broadcast()
            }
            if frame.type == .siteEvent, let event = try? SiteEventFrame(body: frame.body) {
                return event.up ? .siteUp(event.siteID) : .siteDown(event.siteID)
            }
            guard let header = try? MessageHeader(body: frame.body) else { return nil }
            let (control, rec) = MessageHeader.payload(of: frame.body, header)
            return .message(ReceivedMessage(source: header.source, control: Array(control), rec: Array(rec),
                                            lsn: header.lsn, flags: header.flags))
        }
    }

    /// Hands every message now waiting (waiting up to `timeout` for the first) to `body`, in place; site
    /// events are skipped. No allocation per message. Returns how many messages.
    func receiveAll(timeout: Double?, _ body: (MessageView) -> Void) throws(BrokerClientError) -> Int {
        guard options.roles.contains(.receiver) else { throw .invalidArgument("client did not register as a receiver") }
        let deadline = timeout.map { Posix.monotonicNanoseconds() + UInt64(max(0, $0) * 1e9) }
        var ringBusy = false
        while true {
            let ringSide = state.withLock { rings }
            if let ringSide, !ringBusy {
                // A short spin first: records usually follow within microseconds while traffic flows, and
                // blocking costs the broker and the reader thread a wake-up each.
                for _ in 0..<Self.spinChecks where ringSide.hasWork { break }
            }
            // The reader thread asked for the ring (a callback ran long): it drains into the inbox meanwhile.
            if let ringSide, ringSide.hasWork, !ringSide.consumerWanted.load(ordering: .relaxed) {
                if ringSide.consumerLock.tryLock() {
                    ringSide.directDrainer.store(UInt(pthread_self()), ordering: .relaxed)
                    let count = drainDirectly(ringSide, body)
                    ringSide.directDrainer.store(0, ordering: .relaxed)
                    ringSide.consumerLock.unlock()
                    if count > 0 { return count }
                } else {
                    // The reader thread is draining it: it broadcasts when the inbox has its batch.
                    ringBusy = true
                }
            }
            enum Next { case batch(ByteBuffer), ring, timedOut }
            let next = try state.withLock { () throws(BrokerClientError) -> Next in
                while true {
                    if !inbox.isEmpty {
                        let taken = inbox
                        inbox = spareInbox
                        spareInbox = taken
                        state.broadcast()
                        return .batch(taken)
                    }
                    if isClosed { throw BrokerClientError.closed }
                    if !ringBusy, let rings, rings.hasWork, !rings.consumerWanted.load(ordering: .relaxed) { return .ring }
                    ringBusy = false
                    directWaiters += 1
                    // A reader thread that left the ring to us must watch the doorbell again.
                    if let rings, rings.readerYielding.load(ordering: .sequentiallyConsistent) { rings.clientDoorbell.signal() }
                    let signalled = state.wait(untilNanoseconds: deadline)
                    directWaiters -= 1
                    if !signalled && inbox.isEmpty { return .timedOut }
                }
            }
            switch next {
            case .batch(let batch): return Self.deliver(batch, body)
            case .ring: continue
            case .timedOut: return 0
            }
        }
    }

    static let spinChecks = 2000

    /// Messages of an inbox batch to `body`; the batch is emptied.
    private static func deliver(_ batch: ByteBuffer, _ body: (MessageView) -> Void) -> Int {
        var count = 0
        var bytes = batch.readable
        while let frame = try? FrameParser.next(in: bytes, maxMessage: Int.max - 64) {
            if frame.type == .message, let header = try? MessageHeader(body: frame.body) {
                body(MessageView(frame.body, header))
                count += 1
            }
            bytes = UnsafeRawBufferPointer(rebasing: bytes[frame.totalSize...])
        }
        batch.reset()
        return count
    }

    /// With the consumer lock: the inbox first (frames the reader thread took from the ring earlier), then
    /// the ring's messages straight to `body`. Site events go to the inbox, other frames to their waiters.
    private func drainDirectly(_ ringSide: ClientRingSide, _ body: (MessageView) -> Void) -> Int {
        let earlier: ByteBuffer? = state.withLock {
            guard !inbox.isEmpty else { return nil }
            let taken = inbox
            inbox = spareInbox
            spareInbox = taken
            return taken
        }
        var count = earlier.map { Self.deliver($0, body) } ?? 0
        ringSide.lastDirectDrain.store(Posix.monotonicNanoseconds(), ordering: .relaxed)
        ringSide.drainedWhileCalledBack = false
        let copy = ringSide.viewCopy
        let result = drainRing(ringSide, budget: 4096) { frame, header in
            // A copy (hot in cache, no allocation): a callback that waits for the broker drains the ring
            // further, and the ring's space must then go back to the broker, this message's too.
            copy.reset()
            copy.append(frame.body)
            body(MessageView(copy.readable, header))
            count += 1
            // The callback waited and moved newer records to the inbox (those go first now), or it ran long
            // and the reader thread wants the ring: stop here.
            return !ringSide.drainedWhileCalledBack && !ringSide.consumerWanted.load(ordering: .relaxed)
        }
        deliverStaged(ringSide.staging, holdBack: false)
        if case .failed(let reason) = result { ringSide.fail(reason) }
        return count
    }
}

extension MessageView {
    /// A view of a checked MESSAGE body.
    init(_ body: UnsafeRawBufferPointer, _ header: MessageHeader) {
        let (control, rec) = MessageHeader.payload(of: body, header)
        self.init(source: header.source, control: control, rec: rec, lsn: header.lsn, flags: header.flags)
    }
}
