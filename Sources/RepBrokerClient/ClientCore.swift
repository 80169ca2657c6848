// State, socket I/O and the reader thread behind BrokerClient. See BrokerClient.swift for the locking rule.
import BrokerSystem
import BrokerWire
#if canImport(Glibc)
import Glibc
#endif

final class ClientCore: @unchecked Sendable {
    let options: BrokerClientOptions
    let state = ConditionLock()
    let writeLock = ConditionLock()

    // Guarded by `state` (and `writeLock` for changes to `descriptor`).
    var descriptor: CInt = -1
    var generation = 0
    var welcome: WelcomeFrame?
    var roleState: RoleState = .none
    var isClosed = false
    var lastError = "not connected yet"
    var inbox: [ClientEvent] = []
    var inboxHead = 0
    var inboxBytes = 0
    var nextSequence: UInt64 = 1
    var results: [UInt64: SendStatus] = [:]
    var waiting: Set<UInt64> = []

    init(options: BrokerClientOptions) { self.options = options }

    // MARK: connecting

    /// Connects and registers once, then starts the reader thread.
    func connectFirst() throws(BrokerClientError) {
        let (fd, frame, leftover) = try Self.connectAndRegister(options)
        install(fd, frame)
        startThread { [self] in readerLoop(initial: leftover) }
    }

    /// Connects to the broker, sends REGISTER and reads WELCOME (blocking). Returns bytes read past it.
    static func connectAndRegister(_ options: BrokerClientOptions) throws(BrokerClientError)
        -> (CInt, WelcomeFrame, [UInt8]) {
        let fd: CInt
        do { fd = try Socket.connectUnix(path: options.socketPath) } catch {
            throw .brokerUnavailable("cannot connect to \(options.socketPath): \(error)")
        }
        let register = RegisterFrame(roles: options.roles, pid: getpid(), group: options.group, name: options.name)
        let policy = AckPolicyFrame(policy: options.ackPolicy, timeoutMilliseconds: UInt32(options.ackTimeout * 1000))
        let bytes = FrameParser.encode(.register, body: register.body) + FrameParser.encode(.ackPolicy, body: policy.body)
        do {
            var failure: BrokerClientError?
            bytes.withUnsafeBytes { raw in
                do throws(BrokerClientError) { try writeAll(fd, raw) } catch { failure = error }
            }
            if let failure { throw failure }
            let buffer = ByteBuffer(capacity: 4096)
            while true {
                if let frame = try FrameParser.next(in: buffer.readable, maxMessage: Wire.defaultMaxMessage) {
                    switch frame.type {
                    case .welcome:
                        let welcome = try WelcomeFrame(body: frame.body)
                        buffer.consume(frame.totalSize)
                        return (fd, welcome, Array(buffer.readable))
                    case .error:
                        throw BrokerClientError.protocolError("broker refused registration: \(try ErrorFrame(body: frame.body))")
                    default:
                        throw BrokerClientError.protocolError("expected WELCOME, got \(frame.type)")
                    }
                }
                buffer.reserve(4096)
                let n = Glibc.read(fd, buffer.writable.baseAddress, buffer.writable.count)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw BrokerClientError.brokerUnavailable("broker closed the connection during registration") }
                buffer.commit(n)
            }
        } catch let error as BrokerClientError {
            Posix.close(descriptor: fd)
            throw error
        } catch {
            Posix.close(descriptor: fd)
            throw .protocolError("\(error)")
        }
    }

    /// Makes `fd` the connection (unless closed meanwhile).
    func install(_ fd: CInt, _ frame: WelcomeFrame) {
        writeLock.withLock {
            state.withLock {
                if isClosed {
                    Posix.close(descriptor: fd)
                    return
                }
                descriptor = fd
                generation += 1
                welcome = frame
                roleState = frame.roleState
                state.broadcast()
            }
        }
    }

    /// Forgets the current connection: waiting sends fail, the descriptor is closed.
    func disconnect(reason: String) {
        writeLock.withLock {
            state.withLock {
                guard descriptor >= 0 else { return }
                Posix.close(descriptor: descriptor)
                descriptor = -1
                generation += 1
                roleState = .none
                lastError = reason
                state.broadcast()
            }
        }
    }

    // MARK: sending

    /// Writes every byte of `parts` in order (blocking); no allocation.
    static func writeAll(_ fd: CInt, _ parts: UnsafeRawBufferPointer...) throws(BrokerClientError) {
        for part in parts where part.count > 0 {
            var offset = 0
            while offset < part.count {
                let n = Glibc.send(fd, part.baseAddress.unsafelyUnwrapped + offset, part.count - offset, CInt(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw .brokerUnavailable("write to the broker failed: \(Errno.current)")
                }
                offset += n
            }
        }
    }

    func send(control: UnsafeRawBufferPointer, rec: UnsafeRawBufferPointer, lsn: LSN, to destination: Int32,
              flags: RepFlags) throws(BrokerClientError) {
        let size = control.count + rec.count
        guard flags.isSubset(of: .known) else { throw .invalidArgument("unknown flags 0x\(String(flags.rawValue, radix: 16))") }
        guard destination > 0 || destination == SiteID.broadcast else {
            throw .invalidArgument("destination must be a site id or broadcast (-1), not \(destination)")
        }
        let permanent = flags.contains(.permanent)
        var sequence: UInt64 = 0
        var sentGeneration = 0
        try writeLock.withLock { () throws(BrokerClientError) in
            let fd: CInt
            (fd, sequence, sentGeneration) = try state.withLock { () throws(BrokerClientError) in
                guard !isClosed else { throw BrokerClientError.closed }
                guard descriptor >= 0 else { throw BrokerClientError.brokerUnavailable(lastError) }
                let limit = Int(welcome?.maxMessage ?? UInt64(Wire.defaultMaxMessage))
                guard size <= limit else { throw BrokerClientError.messageTooLarge(size: size, limit: limit) }
                var seq: UInt64 = 0
                if permanent {
                    seq = nextSequence
                    nextSequence += 1
                    waiting.insert(seq)
                }
                return (descriptor, seq, generation)
            }
            let header = MessageHeader(destination: destination, flags: flags, lsn: lsn,
                                       controlLength: UInt32(control.count), recLength: UInt32(rec.count),
                                       sequence: sequence)
            var failure: BrokerClientError?
            withUnsafeTemporaryAllocation(byteCount: Wire.frameHeaderSize + Wire.messageHeaderSize, alignment: 8) { raw in
                let base = raw.baseAddress.unsafelyUnwrapped
                FrameParser.writeHeader(.message, bodyLength: Wire.messageHeaderSize + size, at: base)
                header.write(to: base + Wire.frameHeaderSize)
                do throws(BrokerClientError) { try Self.writeAll(fd, UnsafeRawBufferPointer(raw), control, rec) } catch { failure = error }
            }
            if let failure {
                state.withLock { _ = waiting.remove(sequence) }
                throw failure
            }
        }
        guard permanent else { return }
        try awaitResult(sequence, generation: sentGeneration, destination: destination)
    }

    private func awaitResult(_ sequence: UInt64, generation sent: Int, destination: Int32) throws(BrokerClientError) {
        let wait = max(options.sendTimeout, options.ackPolicy == .none ? 0 : options.ackTimeout + 2)
        let deadline = Posix.monotonicNanoseconds() + UInt64(wait * 1e9)
        let status: SendStatus = try state.withLock { () throws(BrokerClientError) in
            defer {
                waiting.remove(sequence)
                results[sequence] = nil
            }
            while true {
                if let status = results[sequence] { return status }
                if isClosed { throw BrokerClientError.closed }
                if generation != sent { throw BrokerClientError.brokerUnavailable(lastError) }
                if !state.wait(untilNanoseconds: deadline) && results[sequence] == nil { throw BrokerClientError.timedOut }
            }
        }
        switch status {
        case .ok: return
        case .queueFull: throw .refused("a peer queue is full")
        case .unroutable: throw .unroutable(destination)
        case .ackTimeout: throw .notAcknowledged
        }
    }

    // MARK: receiving

    func nextEvent(timeout: Double?) throws(BrokerClientError) -> ClientEvent? {
        guard options.roles.contains(.receiver) else { throw .invalidArgument("client did not register as a receiver") }
        let deadline = timeout.map { Posix.monotonicNanoseconds() + UInt64(max(0, $0) * 1e9) }
        return try state.withLock { () throws(BrokerClientError) -> ClientEvent? in
            while inboxHead == inbox.count {
                if isClosed { throw BrokerClientError.closed }
                if !state.wait(untilNanoseconds: deadline) && inboxHead == inbox.count { return nil }
            }
            let event = inbox[inboxHead]
            inboxHead += 1
            if case .message(let message) = event { inboxBytes -= message.control.count + message.rec.count }
            if inboxHead == inbox.count || inboxHead > 1024 {
                inbox.removeFirst(inboxHead)
                inboxHead = 0
            }
            state.broadcast()
            return event
        }
    }

    /// Writes one control frame to the broker.
    func sendControl(_ type: FrameType, body: [UInt8]) throws(BrokerClientError) {
        let bytes = FrameParser.encode(type, body: body)
        try writeLock.withLock { () throws(BrokerClientError) in
            let fd = try state.withLock { () throws(BrokerClientError) in
                guard !isClosed else { throw BrokerClientError.closed }
                guard descriptor >= 0 else { throw BrokerClientError.brokerUnavailable(lastError) }
                return descriptor
            }
            var failure: BrokerClientError?
            bytes.withUnsafeBytes { raw in
                do throws(BrokerClientError) { try Self.writeAll(fd, raw) } catch { failure = error }
            }
            if let failure { throw failure }
        }
    }

    func waitFor(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Posix.monotonicNanoseconds() + UInt64(max(0, timeout) * 1e9)
        return state.withLock {
            while !condition() {
                if isClosed || !state.wait(untilNanoseconds: deadline) { return condition() }
            }
            return true
        }
    }

    func close() {
        let fd: CInt = state.withLock {
            isClosed = true
            state.broadcast()
            return descriptor
        }
        if fd >= 0 { shutdown(fd, CInt(SHUT_RDWR)) }
    }
}
