// A local client's shared-memory rings, on the broker's side. The client writes MESSAGE frames into the
// to-broker ring (control frames and messages too large for the ring go by the socket, the latter behind a
// MARK record in the ring); the broker moves frames for the client from its output queue into the
// to-client ring the same way. Each ring record is one frame, copied to private memory before it is parsed:
// the client can write the shared memory at any time.
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
    /// Private copy of the record being handled.
    let scratch = ByteBuffer(capacity: 4096)
    /// The ring reached a MARK before its socket frame arrived: the ring waits for the socket.
    @exclusivity(unchecked) var awaitingSocketMessage = false
    var ringBytes: Int { reader.ring.size }

    init(segment: SharedSegment, ringBytes: Int, clientDoorbell: EventFd) {
        self.segment = segment
        let rings = RingLayout.rings(segment.base, ringBytes: ringBytes)
        reader = RingReader(rings.toBroker)
        writer = RingWriter(rings.toClient)
        self.clientDoorbell = clientDoorbell
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

    /// Handles up to `budget` records of the to-broker ring; true when it found any.
    @discardableResult
    func drainRing(budget: Int = 4096, untilMark: Bool = false) -> Bool {
        guard let rings, !isClosed else { return false }
        var handled = 0
        var sawMark = false
        do {
            while handled < budget, !rings.awaitingSocketMessage, let record = try rings.reader.next() {
                handled += 1
                if record.kind == .mark {
                    if untilMark {
                        sawMark = true
                        break
                    }
                    rings.awaitingSocketMessage = true
                    break
                }
                rings.scratch.reset()
                rings.scratch.append(record.payload)
                guard let frame = try FrameParser.next(in: rings.scratch.readable, maxMessage: maxMessage),
                      frame.totalSize == record.payload.count else {
                    throw WireError.malformed(type: .message, reason: "ring record is not exactly one frame")
                }
                isHandlingRingRecord = true
                defer { isHandlingRingRecord = false }
                try handleFrame(frame)
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
        rings.reader.release()
        if rings.reader.producerNeedsWake() { rings.clientDoorbell.signal() }
        if untilMark && !sawMark {
            protocolError(.unexpected(type: .message, state: "on the socket with no MARK for it in the ring"))
        }
        return handled > 0
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
    /// a MARK); true when it moved any.
    @discardableResult
    func flushToRing() -> Bool {
        guard let rings, !isClosed, !output.isEmpty else { return false }
        var moved = 0
        var bytes = output.readable
        do {
            while let size = FrameParser.pendingFrameSize(in: bytes), size <= bytes.count {
                let frame = UnsafeRawBufferPointer(rebasing: bytes[..<size])
                if size > rings.writer.maxPayload {
                    guard try rings.writer.write(kind: .mark, payload: 0, { _ in }) else { break }
                    rings.socketOutput.buffer.append(frame)
                } else {
                    let written = try rings.writer.write(kind: .frame, payload: size) { out in
                        out.copyMemory(from: frame.baseAddress.unsafelyUnwrapped, byteCount: size)
                    }
                    if !written {
                        // Full: say so; the client rings our doorbell when it has made room.
                        if rings.writer.announceWaiting(forPayload: size) { continue }
                        break
                    }
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
        rings.writer.publish()
        if rings.writer.consumerNeedsWake() { rings.clientDoorbell.signal() }
        return true
    }
}
