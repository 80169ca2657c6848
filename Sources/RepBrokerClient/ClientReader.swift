// The client's reader thread: frames from the broker (by the socket, and by the to-client ring when there
// are rings) into the inbox and send results; on loss of the broker, reconnects with backoff (50 ms doubling
// to 1 s) and registers again. With rings it spins briefly on an empty ring, then says it sleeps and waits in
// poll on the socket and its doorbell.
import BrokerSystem
import BrokerWire
import CRepBrokerIPC
#if canImport(Glibc)
import Glibc
#endif

extension ClientCore {
    func readerLoop(initial: [UInt8]) {
        let buffer = ByteBuffer(capacity: 256 << 10)
        buffer.append(initial)
        // Frames that came with WELCOME are handled before the first blocking read.
        if let reason = processFrames(buffer) { lose(reason) }
        var backoff = 0.05
        while true {
            let (fd, ringSide): (CInt, ClientRingSide?) = state.withLock { isClosed ? (-2, nil) : (descriptor, rings) }
            if fd == -2 { break }
            if fd < 0 {
                guard options.reconnect else { break }
                do {
                    let (newFD, frame, leftover, newRings) = try Self.connectAndRegister(options)
                    buffer.clear()
                    buffer.append(leftover)
                    install(newFD, frame, newRings)
                    backoff = 0.05
                    if let reason = processFrames(buffer) { lose(reason) }
                } catch {
                    state.withLock {
                        lastError = "\(error)"
                        _ = state.wait(untilNanoseconds: Posix.monotonicNanoseconds() + UInt64(backoff * 1e9))
                    }
                    backoff = min(backoff * 2, 1.0)
                }
                continue
            }
            let reason = ringSide.map { serviceRing($0, fd, buffer) } ?? readOnce(fd, buffer)
            if let reason {
                lose(reason)
                buffer.clear()
            }
        }
        let fd: CInt = state.withLock { descriptor }
        if fd >= 0 { disconnect(reason: "client closed") }
    }

    /// Moves the staged frames into the inbox under one lock; holds back (so stops reading, and the broker
    /// queues, bounded) while the inbox is over its limit.
    func deliverStaged() {
        guard !staging.isEmpty else { return }
        state.withLock {
            while inbox.readableBytes > options.inboxLimitBytes && !isClosed {
                state.wait(untilNanoseconds: Posix.monotonicNanoseconds() + 100_000_000)
            }
            inbox.append(staging.readable)
            state.broadcast()
        }
        staging.reset()
    }

    private func lose(_ reason: String) {
        markFailing(reason)
        disconnect(reason: reason)
    }

    /// One round with rings: drain the to-client ring; when empty, spin, then sleep on socket and doorbell.
    private func serviceRing(_ ringSide: ClientRingSide, _ fd: CInt, _ buffer: ByteBuffer) -> String? {
        switch drainRing(ringSide, untilMark: false) {
        case .failed(let reason): return reason
        case .handled: return nil
        case .empty: break
        }
        // Waiting on a MARK: the next message is on the socket, whatever else the ring holds.
        let waitsForSocket = ringSide.awaitingSocketMessage
        if !waitsForSocket {
            for _ in 0..<2000 where ringSide.reader.hasRecords { return nil }
        }
        let asleep = !waitsForSocket && ringSide.reader.prepareToSleep()
        let ready = rb_poll_two(fd, ringSide.clientDoorbell.descriptor, asleep || waitsForSocket ? 1000 : 0)
        if asleep { ringSide.reader.awake() }
        if ready > 0 && ready & 2 != 0 {
            ringSide.clientDoorbell.drain()
            // A sender may wait for room in the to-broker ring.
            state.withLock { state.broadcast() }
        }
        if ready > 0 && ready & 1 != 0 { return readOnce(fd, buffer) }
        return nil
    }

    enum DrainResult { case handled, empty, failed(String) }

    /// Handles the to-client ring's records (up to a MARK, which means the next message comes by the socket).
    private func drainRing(_ ringSide: ClientRingSide, untilMark: Bool) -> DrainResult {
        var handled = 0
        var reachedMark = false
        let limit = state.withLock { Int(welcome?.maxMessage ?? UInt64(Wire.defaultMaxMessage)) }
        do {
            while !ringSide.awaitingSocketMessage, let record = try ringSide.reader.next() {
                handled += 1
                if record.kind == .mark {
                    if untilMark { reachedMark = true } else { ringSide.awaitingSocketMessage = true }
                    break
                }
                ringSide.scratch.reset()
                ringSide.scratch.append(record.payload)
                guard let frame = try FrameParser.next(in: ringSide.scratch.readable, maxMessage: limit),
                      frame.totalSize == record.payload.count else {
                    return .failed("a ring record from the broker is not one frame")
                }
                if let reason = try handle(frame) { return .failed(reason) }
                if handled % 256 == 0 {
                    ringSide.reader.release()
                    deliverStaged()
                }
            }
        } catch {
            return .failed("bad ring record from the broker: \(error)")
        }
        ringSide.reader.release()
        if ringSide.reader.producerNeedsWake() { ringSide.brokerDoorbell.signal() }
        deliverStaged()
        if untilMark && !reachedMark { return .failed("the broker sent a message by the socket without its MARK") }
        return handled > 0 ? .handled : .empty
    }

    /// One blocking read and the frames it completes; returns why the connection ended, or nil.
    private func readOnce(_ fd: CInt, _ buffer: ByteBuffer) -> String? {
        if let needed = FrameParser.pendingFrameSize(in: buffer.readable), needed > buffer.readableBytes {
            buffer.reserve(needed - buffer.readableBytes)
        }
        buffer.reserve(64 << 10)
        let n = Glibc.read(fd, buffer.writable.baseAddress, buffer.writable.count)
        if n < 0 {
            if errno == EINTR { return nil }
            return "read from the broker failed: \(Errno.current)"
        }
        if n == 0 { return "the broker closed the connection" }
        buffer.commit(n)
        return processFrames(buffer)
    }

    /// Handles every complete frame that came by the socket; returns why the connection must end, or nil.
    private func processFrames(_ buffer: ByteBuffer) -> String? {
        let limit = state.withLock { Int(welcome?.maxMessage ?? UInt64(Wire.defaultMaxMessage)) }
        let ringSide = state.withLock { rings }
        do {
            while let frame = try FrameParser.next(in: buffer.readable, maxMessage: limit) {
                if frame.type == .message, let ringSide {
                    // Its MARK in the ring says where it goes: everything before the MARK first.
                    if ringSide.awaitingSocketMessage {
                        ringSide.awaitingSocketMessage = false
                    } else if case .failed(let reason) = drainRing(ringSide, untilMark: true) {
                        return reason
                    }
                }
                if let reason = try handle(frame) { return reason }
                buffer.consume(frame.totalSize)
            }
        } catch {
            return "bad frame from the broker: \(error)"
        }
        deliverStaged()
        buffer.shrinkIfIdle()
        return nil
    }

    private func handle(_ frame: Frame) throws(WireError) -> String? {
        switch frame.type {
        case .message:
            _ = try MessageHeader(body: frame.body)
            staging.append(UnsafeRawBufferPointer(start: frame.body.baseAddress.unsafelyUnwrapped - Wire.frameHeaderSize,
                                                  count: frame.totalSize))
        case .sendResult:
            let result = try SendResultFrame(body: frame.body)
            state.withLock {
                if waiting.contains(result.sequence) {
                    results[result.sequence] = result.status
                    state.broadcast()
                }
            }
        case .siteEvent:
            _ = try SiteEventFrame(body: frame.body)
            staging.append(UnsafeRawBufferPointer(start: frame.body.baseAddress.unsafelyUnwrapped - Wire.frameHeaderSize,
                                                  count: frame.totalSize))
        case .channel:
            handleChannel(try ChannelFrame(body: frame.body))
        case .channelResult:
            handleChannelResult(try ChannelResultFrame(body: frame.body))
        case .role:
            let role = try RoleFrame(body: frame.body)
            state.withLock {
                roleState = role.roleState
                state.broadcast()
            }
        case .error:
            return "broker closed the connection: \(try ErrorFrame(body: frame.body))"
        default:
            throw .unexpected(type: frame.type, state: "from the broker")
        }
        return nil
    }
}
