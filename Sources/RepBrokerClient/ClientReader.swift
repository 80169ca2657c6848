// The client's reader thread: the only reader of the socket. It hands control frames to the threads that
// wait for them (send results, roles, channel messages and outcomes) and, without rings, the receiver's
// frames to the inbox. It never touches a ring, so nothing it does waits for the application's receiving.
// On loss of the broker it fails what waits, then reconnects with backoff (100 ms doubling to 2 s, as the C
// client: a connection that ended within a second of registering does not start the delays again), registers
// again and subscribes its channels again.
import BrokerSystem
import BrokerWire
#if canImport(Glibc)
import Glibc
#endif

extension ClientCore {
    static let firstBackoff = 0.1
    static let lastBackoff = 2.0

    func readerLoop(initial: [UInt8]) {
        let buffer = ByteBuffer(capacity: 64 << 10)
        let staging = ByteBuffer(capacity: 64 << 10)
        buffer.append(initial)
        // Frames that came with WELCOME are handled before the first blocking read.
        if let reason = processFrames(buffer, staging) { lose(reason) }
        var backoff = Self.firstBackoff
        var waitFirst = true
        while true {
            let fd: CInt
            switch state.withLock({ isClosed ? ReaderState.closed : connection.map { .connected($0.number) } ?? .disconnected }) {
            case .closed:
                return disconnect(reason: "client closed")
            case .connected(let number):
                fd = number
            case .disconnected:
                guard options.reconnect else { return }
                let (lived, channels) = state.withLock { (Posix.monotonicNanoseconds() &- connectedAt, subscriptions) }
                if waitFirst {
                    // A connection that lasted starts the delays again; one that ended at once does not.
                    if lived >= 1_000_000_000 { backoff = Self.firstBackoff }
                    waitFirst = false
                }
                state.withLock {
                    if !isClosed { _ = state.wait(untilNanoseconds: Posix.monotonicNanoseconds() + UInt64(backoff * 1e9)) }
                }
                backoff = min(backoff * 2, Self.lastBackoff)
                do {
                    let (socket, frame, leftover, newRings) = try Self.connectAndRegister(options, channels: channels)
                    buffer.clear()
                    buffer.append(leftover)
                    install(socket, frame, newRings)
                    waitFirst = true
                    if let reason = processFrames(buffer, staging) { lose(reason) }
                } catch {
                    state.withLock { lastError = "reconnecting: \(error)" }
                }
                continue
            }
            // Only this thread closes the connection: `fd` stays its number until it does.
            if let reason = readOnce(fd, buffer, staging) {
                lose(reason)
                buffer.clear()
                staging.clear()
            }
        }
    }

    /// What the reader thread finds each time round.
    enum ReaderState {
        case closed
        case disconnected
        case connected(CInt)
    }

    func lose(_ reason: String) {
        let reason = state.withLock { abandonReason } ?? reason
        markFailing(reason)
        disconnect(reason: reason)
    }

    /// One blocking read and the frames it completes; returns why the connection ended, or nil.
    private func readOnce(_ fd: CInt, _ buffer: ByteBuffer, _ staging: ByteBuffer) -> String? {
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
        return processFrames(buffer, staging)
    }

    /// Handles every complete frame in `buffer`; returns why the connection must end, or nil.
    private func processFrames(_ buffer: ByteBuffer, _ staging: ByteBuffer) -> String? {
        let (limit, hasRings) = state.withLock { (messageLimit, rings != nil) }
        do {
            while let frame = try FrameParser.next(in: buffer.readable, maxMessage: limit) {
                if let reason = try handle(frame, staging: staging, hasRings: hasRings) { return reason }
                buffer.consume(frame.totalSize)
            }
        } catch {
            return "bad frame from the broker: \(error)"
        }
        deliverToInbox(staging)
        buffer.shrinkIfIdle()
        return nil
    }

    /// One checked frame from the broker: the receiver's frames to `staging` (then the inbox), the rest to the
    /// threads waiting for them. Returns why the connection must end, or nil.
    private func handle(_ frame: Frame, staging: ByteBuffer, hasRings: Bool) throws(WireError) -> String? {
        switch frame.type {
        case .message, .siteEvent:
            // With rings these come in the to-client ring, in order; on the socket they would jump the queue.
            guard !hasRings else { throw .unexpected(type: frame.type, state: "on the socket of a client with rings") }
            if frame.type == .message { _ = try MessageHeader(body: frame.body) } else { _ = try SiteEventFrame(body: frame.body) }
            staging.append(frame.whole)
        case .sendResult:
            let result = try SendResultFrame(body: frame.body)
            state.withLock {
                if waiting.contains(result.sequence) {
                    results[result.sequence] = result
                    state.broadcast()
                }
            }
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

    /// Moves the staged receiver frames into the inbox under one lock. While the inbox is over its limit it
    /// waits (it stops reading, so the broker queues, bounded), but only while no thread waits for a reply:
    /// a reply never queues behind messages the receiver has not taken.
    private func deliverToInbox(_ staging: ByteBuffer) {
        guard !staging.isEmpty else { return }
        var frames = 0
        var bytes = staging.readable
        while let size = FrameParser.pendingFrameSize(in: bytes), size <= bytes.count {
            frames += 1
            bytes = UnsafeRawBufferPointer(rebasing: bytes[size...])
        }
        state.withLock {
            while inbox.readableBytes > options.inboxLimitBytes && !isClosed && waiting.isEmpty && channelWaiting.isEmpty {
                _ = state.wait(untilNanoseconds: nil)
            }
            if inbox.isEmpty {
                // Nothing waits: the staged buffer becomes the inbox (no copy).
                inbox.swapContents(with: staging)
            } else {
                inbox.append(staging.readable)
            }
            inboxFrames.add(frames, ordering: .sequentiallyConsistent)
        }
        staging.reset()
        if receiverSleeping.load(ordering: .sequentiallyConsistent) { receiverBell.signal() }
    }
}
