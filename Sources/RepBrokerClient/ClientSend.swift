// The sending side of the client: MESSAGE frames into the to-broker ring under `ringLock` (or to the socket
// without rings), control frames to the socket under `writeLock`, and the wait for a PERMANENT send's result.
// A sender waiting for ring room holds `ringLock` only: control frames never wait for ring room.
import BrokerSystem
import BrokerWire
import CRepBrokerIPC
#if canImport(Glibc)
import Glibc
#endif

extension ClientCore {
    /// Writes every byte of `parts` in order (blocking); no allocation.
    static func writeAll(_ fd: CInt, _ parts: UnsafeRawBufferPointer...) throws(BrokerClientError) {
        for part in parts where part.count > 0 {
            var offset = 0
            while offset < part.count {
                // A blocking socket: EINTR is retried by the wrapper, EAGAIN cannot happen but is retried too.
                do {
                    if case .processed(let n) = try Posix.write(descriptor: fd, from: UnsafeRawBufferPointer(rebasing: part[offset...])) {
                        offset += n
                    }
                } catch {
                    throw .brokerUnavailable("write to the broker failed: \(error.errno)")
                }
            }
        }
    }

    func send(control: UnsafeRawBufferPointer, rec: UnsafeRawBufferPointer, lsn: LSN, to destination: Int32,
              flags: RepFlags) throws(BrokerClientError) {
        let size = control.count + rec.count
        guard flags.isSubset(of: .known) else { throw .invalidArgument("unknown flags 0x\(String(flags.rawValue, radix: 16))") }
        guard destination > 0 || destination == SiteID.broadcast || destination == SiteID.master else {
            throw .invalidArgument("destination must be a site id, broadcast (-1) or master (-3), not \(destination)")
        }
        let permanent = flags.contains(.permanent)
        var sequence: UInt64 = 0
        var sentGeneration = 0
        try ringLock.withLock { () throws(BrokerClientError) in
            // descriptor, rings, generation and the limit change only under ringLock (with writeLock and state):
            // held here.
            guard !closedFlag.load(ordering: .relaxed) else { throw BrokerClientError.closed }
            // The connection is not touched per message beyond this test: the ring path needs no descriptor, and
            // reading its number here cost a tenth of `repbroker-bench ipc`'s 64 B rate (scripts/compare-builds).
            guard connection != nil, !abandoned.load(ordering: .acquiring) else {
                throw BrokerClientError.brokerUnavailable(state.withLock { lastError })
            }
            let limit = messageLimit
            guard size <= limit else { throw BrokerClientError.messageTooLarge(size: size, limit: limit) }
            sentGeneration = generation
            if permanent { sequence = expectResult() }
            let header = MessageHeader(destination: destination, flags: flags, lsn: lsn,
                                       controlLength: UInt32(control.count), recLength: UInt32(rec.count),
                                       sequence: sequence)
            do throws(BrokerClientError) {
                if let ringSide = rings {
                    try writeToRing(ringSide, header, control, rec, generation: sentGeneration)
                } else {
                    try writeLock.withLock { () throws(BrokerClientError) in
                        try withUnsafeTemporaryAllocation(byteCount: Wire.frameHeaderSize + Wire.messageHeaderSize, alignment: 8) {
                            raw throws(BrokerClientError) in
                            header.writeFrameHeaders(at: raw.baseAddress.unsafelyUnwrapped)
                            try Self.writeAll(connection!.number, UnsafeRawBufferPointer(raw), control, rec)
                        }
                    }
                }
            } catch {
                if permanent { state.withLock { _ = waiting.remove(sequence) } }
                throw error
            }
        }
        guard permanent else { return }
        try awaitResult(sequence, generation: sentGeneration, destination: destination)
    }

    /// A sequence number whose SEND_RESULT the reader thread will keep (it reads on past a full inbox for it).
    private func expectResult() -> UInt64 {
        state.withLock {
            let next = nextSequence
            nextSequence += 1
            waiting.insert(next)
            state.broadcast()
            return next
        }
    }

    /// Writes one MESSAGE into the to-broker ring, in one record or (too large for one) in parts, waiting for
    /// room up to the send timeout. Write lock held.
    private func writeToRing(_ ringSide: ClientRingSide, _ header: MessageHeader, _ control: UnsafeRawBufferPointer,
                             _ rec: UnsafeRawBufferPointer, generation sent: Int) throws(BrokerClientError) {
        let frameSize = header.frameSize
        let writer = ringSide.writer
        var deadline: UInt64 = 0
        if frameSize <= writer.maxPayload {
            while true {
                let written: Bool
                do {
                    written = try writer.write(kind: .frame, payload: frameSize) {
                        header.writeFrame(at: $0, payload: control, more: rec)
                    }
                } catch { throw .protocolError("\(error)") }
                if written { break }
                try waitForRoom(ringSide, payload: frameSize, generation: sent, deadline: &deadline)
            }
        } else {
            // Gathered once into private memory, then written in parts as the broker makes room.
            let frame = ringSide.largeFrame
            defer {
                frame.reset()
                frame.shrinkIfIdle()
            }
            let out = frame.reserveForWriting(frameSize)
            header.writeFrameHeaders(at: out)
            var at = out + Wire.frameHeaderSize + Wire.messageHeaderSize
            for part in [control, rec] where part.count > 0 {
                at.copyMemory(from: part.baseAddress.unsafelyUnwrapped, byteCount: part.count)
                at += part.count
            }
            frame.commit(frameSize)
            var offset = 0
            do throws(BrokerClientError) {
                while true {
                    do { offset = try writer.writeFragments(of: frame.readable, from: offset) } catch {
                        throw .protocolError("\(error)")
                    }
                    if offset == frameSize { break }
                    try waitForRoom(ringSide, payload: writer.maxPayload, generation: sent, deadline: &deadline)
                }
            } catch {
                // Parts of this frame are in the ring already, and the broker would join the next frame onto
                // them: this connection cannot carry another message. The reader thread reconnects.
                if offset > 0 { abandonConnection(reason: "a send stopped partway through a message in parts: \(error)") }
                throw error
            }
        }
        ringSide.publish()
    }

    /// The to-broker ring is full: publishes what is written, says the sender waits, and blocks on the room
    /// doorbell (rung by the broker when it made room, by the reader thread when the connection fails, by
    /// `close`). Throws when the send timeout passes or the connection is gone.
    private func waitForRoom(_ ringSide: ClientRingSide, payload: Int, generation sent: Int,
                             deadline: inout UInt64) throws(BrokerClientError) {
        ringSide.publish()
        if ringSide.writer.announceWaiting(forPayload: payload) { return }
        let now = Posix.monotonicNanoseconds()
        if deadline == 0 { deadline = now + UInt64(options.sendTimeout * 1e9) }
        guard now < deadline else { throw .refused("the shared-memory ring to the broker stayed full") }
        try state.withLock { () throws(BrokerClientError) in
            if isClosed { throw BrokerClientError.closed }
            if failing || generation != sent { throw BrokerClientError.brokerUnavailable(lastError) }
        }
        let milliseconds = CInt(min((deadline - now + 999_999) / 1_000_000, 60_000))
        if rb_poll_two(ringSide.roomDoorbell.descriptor, -1, milliseconds) > 0 { ringSide.roomDoorbell.drain() }
    }

    private func awaitResult(_ sequence: UInt64, generation sent: Int, destination: Int32) throws(BrokerClientError) {
        let wait = max(options.sendTimeout, options.ackPolicy == .none ? 0 : options.ackTimeout + 2)
        let deadline = Posix.monotonicNanoseconds() + UInt64(wait * 1e9)
        let result: SendResultFrame = try state.withLock { () throws(BrokerClientError) in
            defer {
                waiting.remove(sequence)
                results[sequence] = nil
            }
            while true {
                if let result = results[sequence] { return result }
                if isClosed { throw BrokerClientError.closed }
                if generation != sent { throw BrokerClientError.brokerUnavailable(lastError) }
                if !state.wait(untilNanoseconds: deadline) && results[sequence] == nil { throw BrokerClientError.timedOut }
            }
        }
        switch result.status {
        case .ok: return
        case .queueFull: throw .refused("a destination's queue is full: the message was queued nowhere")
        case .partlyQueued: throw .refused("queued for some sites and dropped at sites whose queue is full")
        case .unroutable: throw .unroutable(destination)
        case .ackTimeout: throw .notAcknowledged(acked: result.acked, missing: result.missing)
        }
    }

    /// Writes one control frame to the broker.
    func sendControl(_ type: FrameType, body: [UInt8]) throws(BrokerClientError) {
        let bytes = FrameParser.encode(type, body: body)
        try writeLock.withLock { () throws(BrokerClientError) in
            let fd = try state.withLock { () throws(BrokerClientError) in
                guard !isClosed else { throw BrokerClientError.closed }
                guard let connection else { throw BrokerClientError.brokerUnavailable(lastError) }
                return connection.number
            }
            var failure: BrokerClientError?
            bytes.withUnsafeBytes { raw in
                do throws(BrokerClientError) { try Self.writeAll(fd, raw) } catch { failure = error }
            }
            if let failure { throw failure }
        }
    }
}
