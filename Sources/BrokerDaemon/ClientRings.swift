// A local client's shared-memory rings, on the broker's side. The client writes MESSAGE frames into the
// to-broker ring (control frames and messages too large for the ring go by the socket, the latter behind a
// MARK record in the ring); the broker writes frames for the client into the to-client ring the same way,
// straight from routing while the client's output queue is empty, from the queue otherwise.
// A MESSAGE record is parsed where it lies: the frame and message headers are each read once into local
// values and checked against the record's length, and the payload is then only copied, never interpreted,
// so a client that changes the shared memory meanwhile garbles nothing but its own payload. Other records
// are copied to private memory before they are parsed.
// Hot-path state is @exclusivity(unchecked): one thread owns it and no access to it overlaps another.
import BrokerSystem
import BrokerWire

final class ClientRings {
    let segment: SharedSegment
    let reader: RingReader
    let writer: RingWriter
    /// Rung to wake the client's reader thread (it sleeps in poll on this eventfd and the socket).
    let clientDoorbell: EventFd
    /// Frames for the client that are too large for the ring; each has a MARK in the ring.
    let socketOutput = FrameQueue(capacity: 4096)
    /// Private copy of a control record being handled.
    let scratch = ByteBuffer(capacity: 4096)
    /// The ring reached a MARK before its socket frame arrived: the ring waits for the socket.
    @exclusivity(unchecked) var awaitingSocketMessage = false
    /// Records written to the to-client ring and not yet published.
    @exclusivity(unchecked) private(set) var hasUnpublished = false
    var ringBytes: Int { reader.ring.size }

    init(segment: SharedSegment, ringBytes: Int, clientDoorbell: EventFd) {
        self.segment = segment
        let rings = RingLayout.rings(segment.base, ringBytes: ringBytes)
        reader = RingReader(rings.toBroker)
        writer = RingWriter(rings.toClient)
        self.clientDoorbell = clientDoorbell
    }

    /// Writes one MESSAGE frame into the to-client ring; false when it is too large for the ring, the ring is
    /// full, or the ring is corrupt (the caller then queues it, and the queue's flush reports the corruption).
    @inline(__always)
    func write(_ header: MessageHeader, payload: UnsafeRawBufferPointer, frameSize: Int) -> Bool {
        guard frameSize <= writer.maxPayload else { return false }
        let written = try? writer.write(kind: .frame, payload: frameSize) { header.writeFrame(at: $0, payload: payload) }
        guard written == true else { return false }
        hasUnpublished = true
        return true
    }

    /// Writes one whole frame (from the output queue) into the to-client ring; false when full.
    @inline(__always)
    func write(frame: UnsafeRawBufferPointer) throws(RingError) -> Bool {
        let written = try writer.write(kind: .frame, payload: frame.count) { out in
            out.copyMemory(from: frame.baseAddress.unsafelyUnwrapped, byteCount: frame.count)
        }
        if written { hasUnpublished = true }
        return written
    }

    /// Writes a MARK: the next frame goes by the socket.
    func writeMark() throws(RingError) -> Bool {
        let written = try writer.write(kind: .mark, payload: 0) { _ in }
        if written { hasUnpublished = true }
        return written
    }

    /// Makes the written records visible and wakes the client if it said it sleeps.
    func publish() {
        hasUnpublished = false
        writer.publish()
        if writer.consumerNeedsWake() { clientDoorbell.signal() }
    }
}

extension LocalClient {
    /// Creates the segment and doorbell and sends WELCOME with them attached; nil when the broker offers none.
    func offerRings(requested: UInt32, welcome: WelcomeFrame) throws -> Bool {
        let maximum = broker.config.maxRingBytes
        guard requested > 0, maximum >= RingLayout.minimumRingBytes else { return false }
        let ringBytes = RingLayout.grantedRingBytes(requested: Int(requested), maximum: maximum)
        let (segment, memfd) = try SharedSegment.create(size: RingLayout.segmentBytes(ringBytes: ringBytes),
                                                        name: "repbroker-client-\(id)")
        defer { Posix.close(descriptor: memfd) }
        RingLayout.initialize(segment.base, ringBytes: ringBytes)
        let doorbell = try EventFd()
        var granted = welcome
        granted.ringBytes = UInt32(ringBytes)
        let bytes = FrameParser.encode(.welcome, body: granted.body)
        let sent = try Socket.send(bytes, with: [memfd, broker.loop.wakeup.descriptor, doorbell.descriptor],
                                   on: descriptor)
        guard sent == bytes.count else { throw SystemError("sendmsg(WELCOME)", .wouldBlock) }
        rings = ClientRings(segment: segment, ringBytes: ringBytes, clientDoorbell: doorbell)
        return true
    }

    /// Whether the to-broker ring has records to drain now (it does not wait at a MARK for the socket).
    @inline(__always)
    var hasRingInput: Bool {
        borrowedRings?.with { !$0.awaitingSocketMessage && $0.reader.hasRecords } ?? false
    }

    /// Handles up to `budget` records of the to-broker ring; true when it found any.
    @discardableResult
    func drainRing(budget: Int = 4096, untilMark: Bool = false) -> Bool {
        guard let rings, !isClosed else { return false }
        let reader = rings.reader
        var handled = 0
        var sawMark = false
        do {
            while handled < budget, !rings.awaitingSocketMessage, let record = try reader.next() {
                handled += 1
                if record.kind == .mark {
                    if untilMark {
                        sawMark = true
                        break
                    }
                    rings.awaitingSocketMessage = true
                    break
                }
                // The frame header is read once (FrameParser.next) and its type and length are values from then on.
                guard let frame = try FrameParser.next(in: record.payload, maxMessage: maxMessage),
                      frame.totalSize == record.payload.count else {
                    throw WireError.malformed(type: .message, reason: "ring record is not exactly one frame")
                }
                if frame.type == .message {
                    try routeRingMessage(frame.body)
                } else {
                    try handleRingControl(record.payload, scratch: rings.scratch)
                }
                if isClosed { return true }
            }
        } catch let error as RingError {
            broker.countBadFrame(clientID: id, .malformed(type: .message, reason: error.description))
            close(reason: error.description)
            return true
        } catch let error as WireError {
            protocolError(error)
            return true
        } catch {
            close(reason: "\(error)")
            return true
        }
        reader.release()
        if reader.producerNeedsWake() { rings.clientDoorbell.signal() }
        if untilMark && !sawMark {
            protocolError(.unexpected(type: .message, state: "on the socket with no MARK for it in the ring"))
        }
        return handled > 0
    }

    /// A MESSAGE record, in place: MessageHeader reads each field once and checks the lengths against the body.
    @inline(__always)
    private func routeRingMessage(_ body: UnsafeRawBufferPointer) throws(WireError) {
        let header = try MessageHeader(body: body)
        let payload = UnsafeRawBufferPointer(rebasing: body[Wire.messageHeaderSize...])
        borrowedBroker.with { $0.route(from: self, header, payload: payload) }
    }

    /// Any other record: copied to private memory, then handled like a frame from the socket.
    private func handleRingControl(_ record: UnsafeRawBufferPointer, scratch: ByteBuffer) throws(WireError) {
        scratch.reset()
        scratch.append(record)
        guard let frame = try FrameParser.next(in: scratch.readable, maxMessage: maxMessage),
              frame.totalSize == record.count else {
            throw .malformed(type: .message, reason: "ring record changed while it was copied")
        }
        isHandlingRingRecord = true
        defer { isHandlingRingRecord = false }
        try handleFrame(frame)
    }

    /// A MESSAGE that came by the socket: every ring record before its MARK is handled first.
    func socketMessageFromRingClient() -> Bool {
        guard let rings else { return true }
        if rings.awaitingSocketMessage {
            rings.awaitingSocketMessage = false
            return true
        }
        drainRing(budget: Int.max, untilMark: true)
        return !isClosed
    }

    /// Moves whole frames from the output queue into the to-client ring (large ones go by the socket behind
    /// a MARK); true when it moved any. The caller publishes.
    @discardableResult
    func flushToRing() -> Bool {
        guard let rings, !isClosed, !output.isEmpty else { return false }
        var moved = 0
        var bytes = output.readable
        do {
            while let size = FrameParser.pendingFrameSize(in: bytes), size <= bytes.count {
                let frame = UnsafeRawBufferPointer(rebasing: bytes[..<size])
                if size > rings.writer.maxPayload {
                    guard try rings.writeMark() else { break }
                    rings.socketOutput.buffer.append(frame)
                } else if try !rings.write(frame: frame) {
                    // Full: say so; the client rings our doorbell when it has made room.
                    if rings.writer.announceWaiting(forPayload: size) { continue }
                    break
                }
                moved += size
                bytes = UnsafeRawBufferPointer(rebasing: bytes[size...])
            }
        } catch {
            broker.countBadFrame(clientID: id, .malformed(type: .message, reason: error.description))
            close(reason: error.description)
            return true
        }
        guard moved > 0 else { return false }
        output.didWrite(moved)
        if !rings.socketOutput.isEmpty { scheduleFlush() }
        return true
    }
}
