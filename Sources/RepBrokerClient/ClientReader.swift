// The client's reader thread: frames from the broker into the inbox and send results; on loss of the
// broker, reconnects with backoff (50 ms doubling to 1 s) and registers again.
import BrokerSystem
import BrokerWire
#if canImport(Glibc)
import Glibc
#endif

extension ClientCore {
    func readerLoop(initial: [UInt8]) {
        let buffer = ByteBuffer(capacity: 256 << 10)
        buffer.append(initial)
        // Frames that came with WELCOME are handled before the first blocking read.
        if let reason = processFrames(buffer) { disconnect(reason: reason) }
        var backoff = 0.05
        while true {
            let fd: CInt = state.withLock { isClosed ? -2 : descriptor }
            if fd == -2 { break }
            if fd < 0 {
                guard options.reconnect else { break }
                do {
                    let (newFD, frame, leftover) = try Self.connectAndRegister(options)
                    buffer.clear()
                    buffer.append(leftover)
                    install(newFD, frame)
                    backoff = 0.05
                    if let reason = processFrames(buffer) { disconnect(reason: reason) }
                } catch {
                    state.withLock {
                        lastError = "\(error)"
                        _ = state.wait(untilNanoseconds: Posix.monotonicNanoseconds() + UInt64(backoff * 1e9))
                    }
                    backoff = min(backoff * 2, 1.0)
                }
                continue
            }
            if let reason = readOnce(fd, buffer) {
                disconnect(reason: reason)
                buffer.clear()
            }
        }
        let fd: CInt = state.withLock { descriptor }
        if fd >= 0 { disconnect(reason: "client closed") }
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

    /// Handles every complete frame in `buffer`; returns why the connection must end, or nil.
    private func processFrames(_ buffer: ByteBuffer) -> String? {
        let limit = state.withLock { Int(welcome?.maxMessage ?? UInt64(Wire.defaultMaxMessage)) }
        do {
            while let frame = try FrameParser.next(in: buffer.readable, maxMessage: limit) {
                if let reason = try handle(frame) { return reason }
                buffer.consume(frame.totalSize)
            }
        } catch {
            return "bad frame from the broker: \(error)"
        }
        buffer.shrinkIfIdle()
        return nil
    }

    private func handle(_ frame: Frame) throws(WireError) -> String? {
        switch frame.type {
        case .message:
            let header = try MessageHeader(body: frame.body)
            let (control, rec) = MessageHeader.payload(of: frame.body, header)
            let message = ReceivedMessage(source: header.source, control: Array(control), rec: Array(rec),
                                          lsn: header.lsn, flags: header.flags)
            state.withLock {
                // Hold back (and so stop reading) while the inbox is over its limit and someone may drain it.
                while inboxBytes > options.inboxLimitBytes && !isClosed {
                    state.wait(untilNanoseconds: Posix.monotonicNanoseconds() + 100_000_000)
                }
                inbox.append(.message(message))
                inboxBytes += control.count + rec.count
                state.broadcast()
            }
        case .sendResult:
            let result = try SendResultFrame(body: frame.body)
            state.withLock {
                if waiting.contains(result.sequence) {
                    results[result.sequence] = result.status
                    state.broadcast()
                }
            }
        case .siteEvent:
            let event = try SiteEventFrame(body: frame.body)
            state.withLock {
                inbox.append(event.up ? .siteUp(event.siteID) : .siteDown(event.siteID))
                state.broadcast()
            }
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
