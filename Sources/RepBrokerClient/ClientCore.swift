// State, connection and sending behind BrokerClient. See BrokerClient.swift for who owns what.
import BrokerSystem
import BrokerWire
import CRepBrokerIPC
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

final class ClientCore: @unchecked Sendable {
    let options: BrokerClientOptions
    /// Guards what the reader thread shares with the calling threads (below, up to the receiver's state).
    let state = ConditionLock()
    /// Serialises writers of the socket and of the to-broker ring; held (with `state`) to swap the connection.
    let writeLock = ConditionLock()

    // Guarded by `state`; changed only with `writeLock` held too, so a writer may read them under either.
    // Only the reader thread closes the connection (`disconnect`); other threads shut it down.
    var connection: OwnedDescriptor?
    /// The connection's number, -1 without one.
    var descriptor: CInt { connection?.number ?? -1 }
    var generation = 0
    var welcome: WelcomeFrame? {
        didSet { messageLimit = Int(welcome?.maxMessage ?? UInt64(Wire.defaultMaxMessage)) }
    }
    /// The broker's message limit (control + rec) from WELCOME.
    var messageLimit = Wire.defaultMaxMessage
    /// Shared-memory rings of the current connection (replaced with it).
    var rings: ClientRingSide?

    // Guarded by `state`.
    var roleState: RoleState = .none
    /// Mirrored in `closedFlag` for the paths that do not take `state`.
    var isClosed = false {
        didSet { closedFlag.store(isClosed, ordering: .sequentiallyConsistent) }
    }
    let closedFlag = Atomic<Bool>(false)
    var lastError = "not connected yet"
    /// Set by the reader thread when the connection broke, before it tears it down: a sender waiting for
    /// room in the ring gives up.
    var failing = false
    /// Why another thread shut the connection down (a corrupt ring); the reader thread reports it.
    var abandonReason: String?
    var nextSequence: UInt64 = 1
    var results: [UInt64: SendStatus] = [:]
    var waiting: Set<UInt64> = []
    /// Channels: messages for this client's subscriptions, and outcomes of its channel sends and requests.
    var subscribed = false
    var channelInbox: [ChannelMessage] = []
    var channelWaiting: Set<UInt64> = []
    var channelOutcomes: [UInt64: ChannelOutcome] = [:]
    /// Without rings: MESSAGE and SITE_EVENT frames the reader thread read, in order, for the receiver.
    var inbox = ByteBuffer(capacity: 256 << 10)
    /// Frames of the inbox, mirrored for the receiver's check without the lock.
    let inboxFrames = Atomic<Int>(0)

    // The reader thread's signals to the receiving thread.
    /// Bumped whenever the connection (and so the rings) changes.
    let connectionEpoch = Atomic<Int>(0)
    /// Rung for the receiving thread when it said it sleeps: inbox frames, a changed connection, close.
    let receiverBell: EventFd
    let receiverSleeping = Atomic<Bool>(false)

    /// Held by the one thread receiving now; it alone touches `receiver`.
    let receiving = Atomic<Bool>(false)
    let receiver = ReceiverState()

    init(options: BrokerClientOptions) throws(BrokerClientError) {
        self.options = options
        do { receiverBell = try EventFd() } catch { throw .brokerUnavailable("cannot create an eventfd: \(error)") }
    }

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
                            rings = try ClientRingSide(ringBytes: Int(welcome.ringBytes), maxMessage: Int(welcome.maxMessage), descriptors: taken)
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
                abandonReason = nil
                state.broadcast()
            }
        }
        connectionChanged()
    }

    /// Tells the receiving thread to look at the connection again.
    func connectionChanged() {
        connectionEpoch.add(1, ordering: .sequentiallyConsistent)
        receiverBell.signal()
    }

    /// The reader thread found the connection broken: waiting senders give up before it is torn down.
    func markFailing(_ reason: String) {
        let ringSide: ClientRingSide? = state.withLock {
            failing = true
            lastError = reason
            state.broadcast()
            return rings
        }
        ringSide?.roomDoorbell.signal()
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
        connectionChanged()
    }

    /// Another thread found the connection unusable (a corrupt ring): it shuts the socket down, and the
    /// reader thread, which owns the descriptor, ends the connection with `reason`.
    func abandonConnection(reason: String) {
        state.withLock {
            guard abandonReason == nil else { return }
            abandonReason = reason
            lastError = reason
            connection?.shutdown()
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
            // descriptor, rings, generation and the limit change only under writeLock (and state): held here.
            guard !closedFlag.load(ordering: .relaxed) else { throw BrokerClientError.closed }
            let fd = descriptor
            guard fd >= 0 else { throw BrokerClientError.brokerUnavailable(state.withLock { lastError }) }
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
                    try withUnsafeTemporaryAllocation(byteCount: Wire.frameHeaderSize + Wire.messageHeaderSize, alignment: 8) {
                        raw throws(BrokerClientError) in
                        header.writeFrameHeaders(at: raw.baseAddress.unsafelyUnwrapped)
                        try Self.writeAll(fd, UnsafeRawBufferPointer(raw), control, rec)
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
            while true {
                do { offset = try writer.writeFragments(of: frame.readable, from: offset) } catch {
                    throw .protocolError("\(error)")
                }
                if offset == frameSize { break }
                try waitForRoom(ringSide, payload: writer.maxPayload, generation: sent, deadline: &deadline)
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

    /// Marks the client closed and wakes the reader thread, which closes the connection itself.
    func close() {
        let (owned, ringSide): (OwnedDescriptor?, ClientRingSide?) = state.withLock {
            isClosed = true
            state.broadcast()
            return (connection, rings)
        }
        owned?.shutdown()
        ringSide?.roomDoorbell.signal()
        receiverBell.signal()
    }
}
