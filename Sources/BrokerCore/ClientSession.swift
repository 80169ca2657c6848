// One local process connected to the broker's Unix socket. Its first frame must be REGISTER; then it sends
// MESSAGE frames and receives WELCOME, ROLE, SEND_RESULT and MESSAGE frames. With rings, MESSAGE frames both
// ways and SITE_EVENT frames to it travel in the rings (ClientRings.swift), everything else on the socket.
// Output is bounded: a delivery that would pass the limit is dropped and counted.
import BrokerWire

final class ClientSession: Session {
    /// The client's id at this broker (WELCOME, stats, channel replies' requester).
    let clientID: UInt32
    let output = FrameQueue(capacity: 64 << 10)
    let outputLimit: Int
    var registration: RegisterFrame? {
        didSet { isRegistered = registration != nil }
    }
    /// Whether REGISTER was accepted (a flag, so the per-frame check copies nothing).
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-builds ipc, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) private(set) var isRegistered = false
    /// Shared-memory rings, once the shell made them (WELCOME sent with them).
    @Borrowable var rings: ClientRings?
    @Borrowable var group: Group?
    var roleState: RoleState = .none
    /// The pid the kernel reports for the other end (SO_PEERCRED), or the registered one without it.
    var pid: Int32
    let connectedAt: UInt64
    /// WELCOME is with the shell: nothing else may go to the socket before it.
    var awaitingWelcome = false
    /// The socket is out of the shell's read interest (backpressure).
    private(set) var readingPaused = false
    /// The client hung up with records left in its to-broker ring: the shell no longer watches its socket, the
    /// rings phase drains the ring as a live client's (a budget per pass, paused with its group), nothing more is
    /// written to the client, and it closes once the ring is empty (Core.serviceRings).
    private(set) var hungUp = false

    @exclusivity(unchecked) var messagesSent = 0
    @exclusivity(unchecked) var bytesSent = 0
    @exclusivity(unchecked) var messagesReceived = 0
    @exclusivity(unchecked) var bytesReceived = 0
    var dropped = 0
    var ackPolicy = AckPolicy.none
    var ackTimeoutNanoseconds: UInt64 = 1_000_000_000
    var permanentAcked = 0
    var permanentFailed = 0
    /// Longest ack timeout a client may ask for.
    static let maxAckTimeoutMilliseconds: UInt32 = 600_000

    init(id: ConnectionID, core: Core, clientID: UInt32, pid: Int32) {
        self.clientID = clientID
        self.pid = pid
        outputLimit = core.config.clientQueueBytes
        connectedAt = core.now
        super.init(id: id, core: core, maxMessage: core.config.maxMessageBytes)
    }

    var name: String { registration?.name ?? "" }

    override func handleFrame(_ frame: Frame) throws(WireError) {
        guard isRegistered else {
            guard frame.type == .register else { throw .notRegistered(type: frame.type) }
            // The versions before the layout: another version may lay the rest out differently. The client is
            // served at the highest version both speak.
            if let versions = RegisterFrame.versions(of: frame.body) {
                guard let chosen = Wire.negotiate(versions) else {
                    let reason = "protocol version \(Wire.describe(versions)); this broker speaks "
                        + Wire.describe(Wire.protocolVersions)
                    return close(reason: "client speaks protocol version \(Wire.describe(versions))",
                                 lastWords: Self.errorFrame(.version, reason))
                }
                protocolVersion = chosen
            }
            try core.register(self, RegisterFrame(body: frame.body))
            return
        }
        switch frame.type {
        case .message:
            let header = try MessageHeader(body: frame.body)
            // Order between the socket and the ring would be undefined: a ring client's messages use the ring.
            guard rings == nil else { throw .unexpected(type: .message, state: "on the socket of a client with rings") }
            // Its group passed the mark partway through this read: the rest waits for room (Core.applyBackpressure
            // parses it again), as a ring producer's records wait in its ring.
            if roleState != .receiver, !hungUp, let group = $group, group.with({ $0.congested }) {
                inputHeld = true
                group.with { $0.producerHoldsInput = true }
                return
            }
            core.route(from: self, header, payload: UnsafeRawBufferPointer(rebasing: frame.body[Wire.messageHeaderSize...]))
        case .ack:
            core.acknowledge(from: self, try AckFrame(body: frame.body))
        case .ackPolicy:
            let policy = try AckPolicyFrame(body: frame.body)
            guard policy.timeoutMilliseconds >= 1, policy.timeoutMilliseconds <= Self.maxAckTimeoutMilliseconds else {
                throw .malformed(type: .ackPolicy, reason: "timeout \(policy.timeoutMilliseconds) ms is outside "
                    + "1...\(Self.maxAckTimeoutMilliseconds)")
            }
            ackPolicy = policy.policy
            ackTimeoutNanoseconds = UInt64(policy.timeoutMilliseconds) * 1_000_000
        case .master:
            core.announceMaster(from: self, try MasterFrame(localBody: frame.body).siteID)
        case .subscribe:
            core.subscribe(self, to: try SubscribeFrame(body: frame.body).channel)
        case .channel:
            core.routeChannel(from: self, try ChannelFrame(body: frame.body))
        case .channelResult:
            if try ChannelResultFrame(body: frame.body).status == .timedOut { core.counters.channelTimeouts += 1 }
        case .error:
            close(reason: "client reported \(try ErrorFrame(body: frame.body))")
        default:
            throw .unexpected(type: frame.type, state: "from a registered client")
        }
    }

    /// Where control and channel frames for the client wait: its socket's queue (the output queue without rings).
    var socketQueue: FrameQueue { rings?.socketOutput ?? output }

    /// Queues a control frame for the client.
    func send(_ type: FrameType, body: [UInt8]) {
        FrameParser.append(type, body: body, to: socketQueue.buffer)
        scheduleFlush()
    }

    /// Queues a site event for the receiver, in order with its messages (in the ring, with rings).
    func sendSiteEvent(_ event: SiteEventFrame) {
        FrameParser.append(.siteEvent, body: event.body, to: output.buffer)
        scheduleFlush()
    }

    /// Queues the outcome of a send that asked for one.
    func sendResult(_ sequence: UInt64, _ status: SendStatus) {
        SendResultFrame(sequence: sequence, status: status).append(to: socketQueue.buffer)
        scheduleFlush()
    }

    /// Queues a MESSAGE for the client unless its output is over the limit; false when dropped. A ring
    /// client with nothing queued gets it written straight into its to-client ring (published at flush) when
    /// it fits there (the ring is not full, the frame fits one record, the ring is not corrupt: else it is
    /// queued, and the queue's flush reports a corruption).
    @discardableResult
    func deliver(_ header: MessageHeader, payload: UnsafeRawBufferPointer) -> Bool {
        let size = Wire.frameHeaderSize + Wire.messageHeaderSize + payload.count
        if let rings = $rings, output.isEmpty, !hungUp, rings.with({ rings in
            guard size <= rings.writer.maxPayload,
                  (try? rings.writer.write(kind: .frame, payload: size) { header.writeFrame(at: $0, payload: payload) }) == true
            else { return false }
            rings.hasUnpublished = true
            return true
        }) {
            messagesReceived += 1
            bytesReceived += payload.count
            scheduleFlush()
            return true
        }
        guard output.isEmpty || output.byteCount + size <= outputLimit else {
            dropped += 1
            return false
        }
        header.append(payload: payload, to: output.buffer)
        messagesReceived += 1
        bytesReceived += payload.count
        scheduleFlush()
        return true
    }

    /// Takes frames already prepared for a receiver (a group's pending queue).
    func deliverQueued(_ queue: FrameQueue, messages: Int, payloadBytes: Int) {
        guard !queue.isEmpty else { return }
        queue.moveAll(to: output.buffer)
        messagesReceived += messages
        bytesReceived += payloadBytes
        scheduleFlush()
    }

    /// Before the shell writes the socket: queued frames go into the to-client ring and are published. True
    /// when the client's receiver said it sleeps: the shell rings its data doorbell.
    override public func publishRing() -> Bool {
        guard let rings, !hungUp, !awaitingWelcome else { return false }
        flushToRing()
        guard rings.hasUnpublished else { return false }
        rings.hasUnpublished = false
        rings.writer.publish()
        return rings.writer.consumerNeedsWake()
    }

    override public func pendingOutput() -> UnsafeRawBufferPointer {
        // Gone, or WELCOME not out yet: nothing goes to the socket (queued messages go to the next receiver).
        guard !hungUp, !awaitingWelcome else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return rings?.socketOutput.readable ?? output.readable
    }

    override public func didWrite(_ count: Int) {
        if let rings { rings.socketOutput.didWrite(count) } else { output.didWrite(count) }
    }

    var transportName: String { rings == nil ? "uds" : "shm" }
    /// The protocol version this client is served at (from its REGISTER).
    var protocolVersion = Wire.protocolVersion

    /// Stops or resumes reading the socket (the kernel then holds what the client sends); on resuming, frames
    /// held in the input are handled.
    func setReadingPaused(_ paused: Bool) {
        guard !isClosed else { return }
        if paused != readingPaused {
            readingPaused = paused
            core.act(.setReading(id, paused: paused))
        }
        if !paused, inputHeld {
            inputHeld = false
            core.received(self, bytes: 0)
        }
    }

    /// Whether the broker takes none of this client's messages for now (its group is congested): its socket is
    /// out of the shell's read interest, or its ring is not drained.
    var isPausedProducer: Bool {
        guard roleState != .receiver, let group else { return false }
        return rings == nil ? readingPaused : group.congested
    }

    /// A client that exits right after its last send has its records still in the ring: they are handled as a
    /// live producer's would be, a budget per pass and paused while its group is congested, and the client closes
    /// when none is left. (Drained in one go, a dead sender's full ring held the loop for 100 ms of CPU, its
    /// peers heard no heartbeat and dropped their links, and a congested group's queues overflowed.)
    override func endOfInput() {
        if inputHeld {
            // What a writer sent before it exited is handled as it would have been without the wait (routed, or
            // dropped and counted), not forgotten with the connection.
            hungUp = true
            inputHeld = false
            core.received(self, bytes: 0)
        }
        guard rings != nil, hasRingInput else { return super.endOfInput() }
        hungUp = true
        core.act(.stopWatching(id))
    }

    override func protocolError(_ error: WireError) {
        core.countBadFrame(clientID: clientID, error)
        close(reason: "bad frame: \(error)", lastWords: Self.errorFrame(error.code, error.description))
    }

    override func close(reason: String, lastWords: [UInt8] = []) {
        guard !isClosed else { return }
        super.close(reason: reason, lastWords: lastWords)
        core.clientClosed(self, reason: reason)
    }
}
