// State, socket I/O and the reader thread behind BrokerClient. See BrokerClient.swift for the locking rule.
import BrokerSystem
import BrokerWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

final class ClientCore: @unchecked Sendable {
    let options: BrokerClientOptions
    let state = ConditionLock()
    let writeLock = ConditionLock()

    // Guarded by `state` (and `writeLock` for changes to `connection`). Only the reader thread closes it
    // (`disconnect`); `close()` on another thread only shuts it down, which the owner checks against closing.
    var connection: OwnedDescriptor?
    /// The connection's number, -1 without one.
    var descriptor: CInt { connection?.number ?? -1 }
    var generation = 0
    var welcome: WelcomeFrame? {
        didSet { messageLimit = Int(welcome?.maxMessage ?? UInt64(Wire.defaultMaxMessage)) }
    }
    /// The broker's message limit (control + rec) from WELCOME; read by every send.
    var messageLimit = Wire.defaultMaxMessage
    var roleState: RoleState = .none
    /// Guarded by `state`; mirrored in `closedFlag` so that the send path needs only `writeLock`.
    var isClosed = false {
        didSet { closedFlag.store(isClosed, ordering: .releasing) }
    }
    let closedFlag = Atomic<Bool>(false)
    var lastError = "not connected yet"
    /// MESSAGE and SITE_EVENT frames for the receiver, in arrival order (no allocation per message).
    var inbox = ByteBuffer(capacity: 256 << 10)
    /// The buffer `receiveAll` swaps in while it walks the previous one outside the lock.
    var spareInbox = ByteBuffer(capacity: 256 << 10)
    var nextSequence: UInt64 = 1
    var results: [UInt64: SendStatus] = [:]
    var waiting: Set<UInt64> = []
    /// Channels: messages for this client's subscriptions, and outcomes of its channel sends and requests.
    var subscribed = false
    var channelInbox: [ChannelMessage] = []
    var channelWaiting: Set<UInt64> = []
    var channelOutcomes: [UInt64: ChannelOutcome] = [:]
    /// Frames the reader thread collected during one drain, moved to the inbox under one lock.
    let staging = ByteBuffer(capacity: 64 << 10)
    /// Shared-memory rings of the current connection (replaced with it).
    var rings: ClientRingSide? {
        didSet { borrowedRings = rings.map(Borrowed.init) }
    }
    /// `rings` for the send path, which holds `writeLock` (under which `rings` changes): no reference count
    /// traffic, shared with the receiving threads, per message.
    var borrowedRings: Borrowed<ClientRingSide>?
    /// Set by the reader thread when the connection broke, before it tears it down.
    var failing = false
    /// Application threads blocked in receiveAll; the reader thread wakes them to drain the ring themselves.
    var directWaiters = 0

    init(options: BrokerClientOptions) { self.options = options }

    // MARK: connecting

    /// Connects and registers once, then starts the reader thread.
    func connectFirst() throws(BrokerClientError) {
        let (fd, frame, leftover, rings) = try Self.connectAndRegister(options)
        install(fd, frame, rings)
        startThread { [self] in readerLoop(initial: leftover) }
    }

    /// Connects to the broker, sends REGISTER and reads WELCOME (blocking). Returns bytes read past it.
    static func connectAndRegister(_ options: BrokerClientOptions) throws(BrokerClientError)
        -> (CInt, WelcomeFrame, [UInt8], ClientRingSide?) {
        let fd: CInt
        do { fd = try Socket.connectUnix(path: options.socketPath) } catch {
            throw .brokerUnavailable("cannot connect to \(options.socketPath): \(error)")
        }
        let ringBytes = options.transport == .unixSocket ? 0 : UInt32(clamping: options.ringBytes)
        let register = RegisterFrame(roles: options.roles, pid: getpid(), group: options.group, name: options.name,
                                     ringBytes: ringBytes)
        let policy = AckPolicyFrame(policy: options.ackPolicy, timeoutMilliseconds: UInt32(options.ackTimeout * 1000))
        let bytes = FrameParser.encode(.register, body: register.body) + FrameParser.encode(.ackPolicy, body: policy.body)
        do {
            var failure: BrokerClientError?
            bytes.withUnsafeBytes { raw in
                do throws(BrokerClientError) { try writeAll(fd, raw) } catch { failure = error }
            }
            // A broker that refuses the client writes its reason and closes, so the write may fail: read
            // what it sent before reporting the write failure.
            let writeFailure = failure
            let buffer = ByteBuffer(capacity: 4096)
            var descriptors: [CInt] = []
            defer { for received in descriptors { Posix.close(descriptor: received) } }
            while true {
                if let frame = try FrameParser.next(in: buffer.readable, maxMessage: Wire.defaultMaxMessage) {
                    switch frame.type {
                    case .welcome:
                        let welcome = try WelcomeFrame(body: frame.body)
                        buffer.consume(frame.totalSize)
                        var rings: ClientRingSide?
                        if welcome.ringBytes > 0 {
                            let taken = descriptors
                            descriptors.removeAll()
                            rings = try ClientRingSide(ringBytes: Int(welcome.ringBytes), descriptors: taken)
                        } else if options.transport == .sharedMemory {
                            throw BrokerClientError.protocolError("the broker offers no shared-memory rings")
                        }
                        return (fd, welcome, Array(buffer.readable), rings)
                    case .error:
                        throw BrokerClientError.protocolError("broker refused registration: \(try ErrorFrame(body: frame.body))")
                    default:
                        throw BrokerClientError.protocolError("expected WELCOME, got \(frame.type)")
                    }
                }
                buffer.reserve(4096)
                let n = (try? Socket.receive(into: buffer.writable, on: fd, fds: &descriptors)) ?? -1
                guard n > 0 else {
                    throw writeFailure ?? BrokerClientError.brokerUnavailable("broker closed the connection during registration")
                }
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

    /// Makes `fd` (and its rings) the connection, unless closed meanwhile.
    func install(_ fd: CInt, _ frame: WelcomeFrame, _ newRings: ClientRingSide?) {
        writeLock.withLock {
            state.withLock {
                if isClosed {
                    Posix.close(descriptor: fd)
                    return
                }
                connection = OwnedDescriptor(adopting: fd)
                generation += 1
                welcome = frame
                roleState = frame.roleState
                rings = newRings
                failing = false
                state.broadcast()
            }
        }
    }

    /// The reader thread found the connection broken: waiting senders give up before it is torn down.
    func markFailing(_ reason: String) {
        state.withLock {
            failing = true
            lastError = reason
            state.broadcast()
        }
    }

    /// Forgets the current connection: waiting sends fail, the descriptor is closed.
    func disconnect(reason: String) {
        writeLock.withLock {
            state.withLock {
                guard let closing = connection else { return }
                closing.close()
                connection = nil
                generation += 1
                roleState = .none
                rings = nil
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
        try writeLock.withLock { () throws(BrokerClientError) in
            // descriptor, rings, generation and welcome change only under writeLock (and state): held here.
            guard !closedFlag.load(ordering: .acquiring) else { throw BrokerClientError.closed }
            let fd = descriptor
            guard fd >= 0 else { throw BrokerClientError.brokerUnavailable(state.withLock { lastError }) }
            let limit = messageLimit
            guard size <= limit else { throw BrokerClientError.messageTooLarge(size: size, limit: limit) }
            let borrowedRings = borrowedRings
            sentGeneration = generation
            if permanent {
                sequence = state.withLock {
                    let next = nextSequence
                    nextSequence += 1
                    waiting.insert(next)
                    return next
                }
            }
            let header = MessageHeader(destination: destination, flags: flags, lsn: lsn,
                                       controlLength: UInt32(control.count), recLength: UInt32(rec.count),
                                       sequence: sequence)
            var failure: BrokerClientError?
            let frameSize = header.frameSize
            if let borrowedRings, borrowedRings.with({ frameSize <= $0.writer.maxPayload }) {
                do throws(BrokerClientError) {
                    try borrowedRings.with { ringSide throws(BrokerClientError) in
                        try writeToRing(ringSide, frameSize: frameSize, generation: sentGeneration) {
                            header.writeFrame(at: $0, payload: control, more: rec)
                        }
                    }
                } catch { failure = error }
            } else {
                // Too large for the ring: a MARK holds its place there, the frame goes by the socket.
                if let ringSide = rings {
                    do throws(BrokerClientError) {
                        try writeToRing(ringSide, kind: .mark, frameSize: 0, generation: sentGeneration) { _ in }
                    } catch {
                        failure = error
                    }
                }
                if failure == nil {
                    withUnsafeTemporaryAllocation(byteCount: Wire.frameHeaderSize + Wire.messageHeaderSize, alignment: 8) { raw in
                        header.writeFrameHeaders(at: raw.baseAddress.unsafelyUnwrapped)
                        do throws(BrokerClientError) { try Self.writeAll(fd, UnsafeRawBufferPointer(raw), control, rec) } catch {
                            failure = error
                        }
                    }
                }
            }
            if let failure {
                state.withLock { _ = waiting.remove(sequence) }
                throw failure
            }
        }
        guard permanent else { return }
        try awaitResult(sequence, generation: sentGeneration, destination: destination)
    }

    /// Writes one record into the to-broker ring, waiting (up to the send timeout) while it is full.
    private func writeToRing(
        _ ringSide: ClientRingSide, kind: RecordKind = .frame, frameSize: Int, generation sent: Int,
        _ fill: (UnsafeMutableRawPointer) -> Void
    ) throws(BrokerClientError) {
        var deadline: UInt64 = 0
        while true {
            let written: Bool
            do { written = try ringSide.writer.write(kind: kind, payload: frameSize, fill) } catch {
                throw .protocolError("\(error)")
            }
            if written {
                ringSide.publish()
                return
            }
            ringSide.publish()
            if ringSide.writer.announceWaiting(forPayload: frameSize) { continue }
            let now = Posix.monotonicNanoseconds()
            if deadline == 0 { deadline = now + UInt64(options.sendTimeout * 1e9) }
            guard now < deadline else { throw .refused("the shared-memory ring to the broker stayed full") }
            try state.withLock { () throws(BrokerClientError) in
                if isClosed { throw BrokerClientError.closed }
                if failing || generation != sent { throw BrokerClientError.brokerUnavailable(lastError) }
                // The reader thread broadcasts when the broker rings our doorbell after making room.
                _ = state.wait(untilNanoseconds: min(deadline, now + 50_000_000))
            }
        }
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
                if !waitForBroker(until: deadline) && results[sequence] == nil { throw BrokerClientError.timedOut }
            }
        }
        switch status {
        case .ok: return
        case .queueFull: throw .refused("a peer queue is full")
        case .unroutable: throw .unroutable(destination)
        case .ackTimeout: throw .notAcknowledged
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
                if isClosed || !waitForBroker(until: deadline) { return condition() }
            }
            return true
        }
    }

    /// Marks the client closed and wakes the reader thread, which closes the connection itself.
    func close() {
        let owned: OwnedDescriptor? = state.withLock {
            isClosed = true
            state.broadcast()
            return connection
        }
        owned?.shutdown()
    }
}
