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
    /// Serialises producers of the to-broker ring; held (with `writeLock` and `state`) to swap the connection.
    let ringLock = ConditionLock()
    /// Serialises writers of the socket; held (with `ringLock` and `state`) to swap the connection.
    let writeLock = ConditionLock()

    // Guarded by `state`; changed only with `ringLock` and `writeLock` held too, so a writer may read them under
    // either.
    // Only the reader thread closes the connection (`disconnect`); other threads shut it down, under `state`.
    var connection: OwnedDescriptor?
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
    /// When the current connection registered (the reconnect backoff starts again only after one that lasted).
    var connectedAt: UInt64 = 0
    /// Set by the reader thread when the connection broke, before it tears it down: a sender waiting for
    /// room in the ring gives up.
    var failing = false
    /// Why another thread shut the connection down (a corrupt ring, a message left in parts); the reader
    /// thread reports it. Mirrored in `abandoned` for the send path, which then sends nothing more on it.
    var abandonReason: String? {
        didSet { abandoned.store(abandonReason != nil, ordering: .releasing) }
    }
    let abandoned = Atomic<Bool>(false)
    var nextSequence: UInt64 = 1
    var results: [UInt64: SendResultFrame] = [:]
    var waiting: Set<UInt64> = []
    /// Channels: messages for this client's subscriptions, and outcomes of its channel sends and requests.
    /// Subscribed again on every new connection, in the order first subscribed.
    var subscriptions: [String] = []
    var subscribed: Bool { !subscriptions.isEmpty }
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
        let (socket, frame, leftover, rings) = try Self.connectAndRegister(options)
        install(socket, frame, rings)
        startThread { [self] in readerLoop(initial: leftover) }
    }

    /// Connects to the broker, sends REGISTER, ACK_POLICY and a SUBSCRIBE for each of `channels` in one write
    /// (nothing else goes first on a new connection), and reads WELCOME (blocking). Returns bytes read past it.
    /// A broker of the version before this one refuses the newer REGISTER for its version: the client then
    /// registers again, on a new connection, at the oldest version it speaks (PROTOCOL.md, "Versioning").
    static func connectAndRegister(_ options: BrokerClientOptions, channels: [String] = []) throws(BrokerClientError)
        -> (OwnedDescriptor, WelcomeFrame, [UInt8], ClientRingSide?) {
        let oldest = Wire.oldestProtocolVersion
        for versions in [Wire.protocolVersions, oldest...oldest] {
            do {
                return try connectAndRegister(options, channels: channels, versions: versions)
            } catch {
                switch error {
                case .refusedVersion: continue
                case .failed(let failure): throw failure
                }
            }
        }
        throw .protocolError("the broker refused protocol versions \(Wire.describe(Wire.protocolVersions))")
    }

    private static func connectAndRegister(_ options: BrokerClientOptions, channels: [String], versions: ClosedRange<UInt16>)
        throws(RegistrationFailure) -> (OwnedDescriptor, WelcomeFrame, [UInt8], ClientRingSide?) {
        let socket: OwnedDescriptor
        do { socket = try Socket.connectUnix(path: options.socketPath) } catch {
            throw .failed(.brokerUnavailable("cannot connect to \(options.socketPath): \(error)"))
        }
        let fd = socket.number
        let ringBytes = options.transport == .unixSocket ? 0 : UInt32(clamping: options.ringBytes)
        let register = RegisterFrame(versions: versions, roles: options.roles, pid: getpid(), group: options.group,
                                     name: options.name, ringBytes: ringBytes)
        let policy = AckPolicyFrame(policy: options.ackPolicy, timeoutMilliseconds: UInt32(options.ackTimeout * 1000))
        let bytes = FrameParser.encode(.register, body: register.body) + FrameParser.encode(.ackPolicy, body: policy.body)
            + channels.flatMap { FrameParser.encode(.subscribe, body: SubscribeFrame(channel: $0).body) }
        do {
            var failure: BrokerClientError?
            bytes.withUnsafeBytes { raw in
                do throws(BrokerClientError) { try writeAll(fd, raw) } catch { failure = error }
            }
            // A broker that refuses the client writes its reason and closes, so the write may fail: read
            // what it sent before reporting the write failure.
            let writeFailure = failure
            let buffer = ByteBuffer(capacity: 4096)
            // Descriptors that came with the bytes: closed when let go, unless the rings take them.
            var descriptors: [OwnedDescriptor] = []
            while true {
                if let frame = try FrameParser.next(in: buffer.readable, maxMessage: Wire.defaultMaxMessage) {
                    switch frame.type {
                    case .welcome:
                        let welcome = try WelcomeFrame(body: frame.body)
                        guard versions.contains(welcome.version) else {
                            throw BrokerClientError.protocolError("WELCOME of version \(welcome.version); this client speaks "
                                + Wire.describe(versions))
                        }
                        buffer.consume(frame.totalSize)
                        var rings: ClientRingSide?
                        if welcome.ringBytes > 0 {
                            let taken = descriptors
                            descriptors.removeAll()
                            rings = try ClientRingSide(ringBytes: Int(welcome.ringBytes), maxMessage: Int(welcome.maxMessage), descriptors: taken)
                        } else if options.transport == .sharedMemory {
                            throw BrokerClientError.protocolError("the broker offers no shared-memory rings")
                        }
                        return (socket, welcome, Array(buffer.readable), rings)
                    case .error:
                        let refusal = try ErrorFrame(body: frame.body)
                        if refusal.code == ErrorCode.version.rawValue && versions.upperBound > Wire.oldestProtocolVersion {
                            throw RegistrationFailure.refusedVersion
                        }
                        throw BrokerClientError.protocolError("broker refused registration: \(refusal)")
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
        } catch let error as RegistrationFailure {
            throw error
        } catch let error as BrokerClientError {
            throw .failed(error)
        } catch {
            throw .failed(.protocolError("\(error)"))
        }
    }

    /// Why one registration attempt failed: a broker that speaks only an older version, or anything else.
    enum RegistrationFailure: Error {
        case refusedVersion
        case failed(BrokerClientError)
    }

    /// Makes `socket` (and its rings) the connection, unless closed meanwhile (then it is let go: closed).
    func install(_ socket: OwnedDescriptor, _ frame: WelcomeFrame, _ newRings: ClientRingSide?) {
        ringLock.withLock {
          writeLock.withLock {
            state.withLock {
                if isClosed { return }
                connection = socket
                generation += 1
                welcome = frame
                roleState = frame.roleState
                rings = newRings
                failing = false
                abandonReason = nil
                connectedAt = Posix.monotonicNanoseconds()
                state.broadcast()
            }
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
        ringLock.withLock {
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

    func waitFor(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Posix.monotonicNanoseconds() + UInt64(max(0, timeout) * 1e9)
        return state.withLock {
            while !condition() {
                if isClosed || !state.wait(untilNanoseconds: deadline) { return condition() }
            }
            return true
        }
    }

    /// Marks the client closed and wakes the reader thread, which closes the connection itself (the shutdown
    /// is under `state`, which the reader thread holds to close: it never reaches a reused number).
    func close() {
        let ringSide: ClientRingSide? = state.withLock {
            isClosed = true
            state.broadcast()
            connection?.shutdown()
            return rings
        }
        ringSide?.roomDoorbell.signal()
        receiverBell.signal()
    }
}
