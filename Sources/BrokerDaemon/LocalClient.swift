// One local process connected to the broker's Unix socket. Its first frame must be REGISTER; then it
// sends MESSAGE frames and receives WELCOME, ROLE, SEND_RESULT and MESSAGE frames. With rings, MESSAGE
// frames both ways and SITE_EVENT frames to it travel in the rings, everything else on the socket.
// Output is bounded: a delivery that would pass the limit is dropped and counted.
import BrokerSystem
import BrokerWire

final class LocalClient: Connection {
    /// The broker outlives every connection it serves.
    unowned let broker: Broker
    let id: UInt32
    let output = FrameQueue(capacity: 64 << 10)
    let outputLimit: Int
    var registration: RegisterFrame? {
        didSet { isRegistered = registration != nil }
    }
    /// Whether REGISTER was accepted (a flag, so the per-frame check copies nothing).
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-ipc-builds, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) private(set) var isRegistered = false
    /// Shared-memory rings, when the client asked for them and the broker granted them.
    @Borrowable var rings: ClientRings?
    @Borrowable var group: Group?
    var roleState: RoleState = .none
    /// The pid the kernel reports for the other end (SO_PEERCRED), or the registered one without it.
    var pid: Int32
    let connectedAt: UInt64

    @exclusivity(unchecked) var messagesSent = 0
    @exclusivity(unchecked) var bytesSent = 0
    @exclusivity(unchecked) var messagesReceived = 0
    @exclusivity(unchecked) var bytesReceived = 0
    var dropped = 0
    var ackPolicy = AckPolicy.none
    var ackTimeoutNanoseconds: UInt64 = 1_000_000_000
    var permanentAcked = 0
    var permanentFailed = 0
    /// The client hung up with records left in its to-broker ring: the socket is out of epoll, the rings phase
    /// drains the ring as a live client's (a budget per pass, paused with its group), nothing more is written to
    /// the client, and it closes once the ring is empty (Broker.serviceRings).
    private(set) var hungUp = false
    /// Longest ack timeout a client may ask for.
    static let maxAckTimeoutMilliseconds: UInt32 = 600_000

    init(descriptor: CInt, broker: Broker, id: UInt32) {
        self.broker = broker
        self.id = id
        outputLimit = broker.config.clientQueueBytes
        pid = Socket.peerCredentials(descriptor).map { Int32($0.pid) } ?? 0
        connectedAt = broker.now
        super.init(descriptor: descriptor, loop: broker.loop, maxMessage: broker.config.maxMessageBytes)
    }

    var name: String { registration?.name ?? "" }

    override func handleFrame(_ frame: Frame) throws(WireError) {
        guard isRegistered else {
            guard frame.type == .register else { throw .notRegistered(type: frame.type) }
            // The version before the layout: another version may lay the rest out differently.
            if let version = RegisterFrame.version(of: frame.body), version != Wire.protocolVersion {
                writeErrorNow(.version, "protocol version \(version); this broker speaks \(Wire.protocolVersion)")
                close(reason: "client speaks protocol version \(version)")
                return
            }
            try broker.register(self, RegisterFrame(body: frame.body))
            return
        }
        switch frame.type {
        case .message:
            let header = try MessageHeader(body: frame.body)
            // Order between the socket and the ring would be undefined: a ring client's messages use the ring.
            guard rings == nil else { throw .unexpected(type: .message, state: "on the socket of a client with rings") }
            broker.route(from: self, header, payload: UnsafeRawBufferPointer(rebasing: frame.body[Wire.messageHeaderSize...]))
        case .ack:
            broker.acknowledge(from: self, try AckFrame(body: frame.body))
        case .ackPolicy:
            let policy = try AckPolicyFrame(body: frame.body)
            guard policy.timeoutMilliseconds >= 1, policy.timeoutMilliseconds <= Self.maxAckTimeoutMilliseconds else {
                throw .malformed(type: .ackPolicy, reason: "timeout \(policy.timeoutMilliseconds) ms is outside "
                    + "1...\(Self.maxAckTimeoutMilliseconds)")
            }
            ackPolicy = policy.policy
            ackTimeoutNanoseconds = UInt64(policy.timeoutMilliseconds) * 1_000_000
        case .master:
            broker.announceMaster(from: self, try MasterFrame(localBody: frame.body).siteID)
        case .subscribe:
            broker.subscribe(self, to: try SubscribeFrame(body: frame.body).channel)
        case .channel:
            broker.routeChannel(from: self, try ChannelFrame(body: frame.body))
        case .channelResult:
            if try ChannelResultFrame(body: frame.body).status == .timedOut { broker.channelTimeouts += 1 }
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
    /// client with nothing queued gets it written straight into its to-client ring (published at flush).
    @discardableResult
    func deliver(_ header: MessageHeader, payload: UnsafeRawBufferPointer) -> Bool {
        let size = Wire.frameHeaderSize + Wire.messageHeaderSize + payload.count
        if let rings = $rings, output.isEmpty, !hungUp, rings.with({ $0.write(header, payload: payload, frameSize: size) }) {
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

    override func pendingOutput() -> UnsafeRawBufferPointer { rings?.socketOutput.readable ?? output.readable }

    override func didWrite(_ count: Int) {
        if let rings { rings.socketOutput.didWrite(count) } else { output.didWrite(count) }
    }

    override func flush() {
        // Gone: what is queued for it stays in the output queue, and whole messages go to the next receiver.
        guard !hungUp else { return }
        if let rings {
            flushToRing()
            if rings.hasUnpublished { rings.publish() }
        }
        super.flush()
    }

    var transportName: String { rings == nil ? "uds" : "shm" }

    /// Whether the broker takes none of this client's messages for now (its group is congested): its socket is
    /// out of epoll's read interest, or its ring is not drained.
    var isPausedProducer: Bool {
        guard roleState != .receiver, let group else { return false }
        return rings == nil ? readingPaused : group.congested
    }

    /// A client that exits right after its last send has its records still in the ring: they are handled as a
    /// live producer's would be, a budget per pass and paused while its group is congested, and the client closes
    /// when none is left. (Drained in one go, a dead sender's full ring held the loop for 100 ms of CPU, its
    /// peers heard no heartbeat and dropped their links, and a congested group's queues overflowed.)
    override func otherSideClosed() {
        guard rings != nil, hasRingInput else { return super.otherSideClosed() }
        hungUp = true
        loop.stopWatching(descriptor)
    }

    override func protocolError(_ error: WireError) {
        broker.countBadFrame(clientID: id, error)
        writeErrorNow(error.code, error.description)
        close(reason: "bad frame: \(error)")
    }

    override func close(reason: String) {
        guard !isClosed else { return }
        super.close(reason: reason)
        broker.clientClosed(self, reason: reason)
    }
}
