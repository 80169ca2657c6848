// The client's reader thread: frames from the broker (by the socket, and by the to-client ring when there
// are rings and no application thread drains it) into the inbox and send results; on loss of the broker,
// reconnects with backoff (50 ms doubling to 1 s) and registers again. Its rounds with rings are in
// ClientReaderRings.swift.
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

    /// Moves the staged frames into the inbox under one lock. With `holdBack` (the reader thread) it waits
    /// while the inbox is over its limit, so it stops reading and the broker queues, bounded.
    func deliverStaged(_ staging: ByteBuffer, holdBack: Bool = true) {
        guard !staging.isEmpty else { return }
        state.withLock {
            while holdBack && inbox.readableBytes > options.inboxLimitBytes && !isClosed {
                state.wait(untilNanoseconds: Posix.monotonicNanoseconds() + 100_000_000)
            }
            if inbox.isEmpty {
                // Nothing waits: the staged buffer becomes the inbox (no copy).
                inbox.swapContents(with: staging)
            } else {
                inbox.append(staging.readable)
            }
            state.broadcast()
        }
        staging.reset()
    }

    func lose(_ reason: String) {
        markFailing(reason)
        disconnect(reason: reason)
    }

    /// One blocking read and the frames it completes; returns why the connection ended, or nil.
    func readOnce(_ fd: CInt, _ buffer: ByteBuffer) -> String? {
        if let needed = FrameParser.pendingFrameSize(in: buffer.readable), needed > buffer.readableBytes {
            buffer.reserve(needed - buffer.readableBytes)
        }
        buffer.reserve(64 << 10)
        let n: Int
        do {
            guard case .processed(let count) = try Posix.read(descriptor: fd, into: buffer.writable) else { return nil }
            n = count
        } catch {
            return "read from the broker failed: \(error.errno)"
        }
        if n == 0 { return "the broker closed the connection" }
        buffer.commit(n)
        return processFrames(buffer)
    }

    /// Handles every complete frame that came by the socket; returns why the connection must end, or nil.
    private func processFrames(_ buffer: ByteBuffer) -> String? {
        let (limit, ringSide) = state.withLock { (messageLimit, rings) }
        do {
            while let frame = try FrameParser.next(in: buffer.readable, maxMessage: limit) {
                if frame.type == .message, let ringSide {
                    // With rings, a MESSAGE on the socket is one too large for the ring: it waits beside the
                    // ring until the ring's consumer reaches the MARK that holds its place.
                    _ = try MessageHeader(body: frame.body)
                    ringSide.addSocketMessage(frame.whole)
                } else if let reason = try handle(frame, staging: staging) {
                    return reason
                }
                buffer.consume(frame.totalSize)
            }
        } catch {
            return "bad frame from the broker: \(error)"
        }
        deliverStaged(staging)
        buffer.shrinkIfIdle()
        return nil
    }

    /// One checked frame from the broker: messages and site events to `staging` (then the inbox), the
    /// rest to the waiting callers. Returns why the connection must end, or nil.
    func handle(_ frame: Frame, staging: ByteBuffer) throws(WireError) -> String? {
        switch frame.type {
        case .message:
            _ = try MessageHeader(body: frame.body)
            staging.append(frame.whole)
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
            staging.append(frame.whole)
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
