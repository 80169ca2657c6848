// One TCP connection to another broker, dialled or accepted. Both ends send HELLO first. The end with
// the lower site id (the arbiter) decides which connection becomes the link and says so with ACTIVATE;
// the other end sends data only after ACTIVATE, so no frame is ever written to a connection the arbiter
// will drop. Output: the handshake buffer first, then (once active) the link's wire,
// which its scheduler refills (PeerScheduler.swift).
import BrokerSystem
import BrokerWire

final class PeerConnection: Connection {
    enum Phase { case connecting, handshaking, active }

    /// The broker outlives every connection it serves.
    unowned let broker: Broker
    let outgoing: Bool
    var link: PeerLink?
    var phase: Phase
    var hello: HelloFrame?
    let handshakeOutput = ByteBuffer(capacity: 256)
    let deadline: UInt64
    /// Set when the closing end is a duplicate or replaced connection: no failure, no backoff.
    var closedQuietly = false
    /// The --join address this connection dialled (its site is learnt from the HELLO).
    let joinTarget: SocketAddress?
    /// Random per connection: the challenge the other side's AUTH must answer.
    let nonce: [UInt8] = (0..<16).map { _ in UInt8.random(in: 0...255) }
    /// With a group key: the other side's AUTH has not been checked yet.
    var awaitingAuth = false

    init(descriptor: CInt, broker: Broker, outgoing link: PeerLink?, joinTarget: SocketAddress? = nil) {
        self.broker = broker
        self.outgoing = link != nil || joinTarget != nil
        self.link = link
        self.joinTarget = joinTarget
        phase = outgoing ? .connecting : .handshaking
        deadline = broker.now + broker.handshakeTimeoutNanoseconds
        super.init(descriptor: descriptor, loop: broker.loop, maxMessage: broker.config.maxMessageBytes,
                   inputCapacity: 256 << 10)
    }

    var peerDescription: String {
        if let site = link?.siteID ?? hello?.siteID { return "site \(site)" }
        return outgoing ? "outgoing" : "incoming"
    }

    /// Sends this broker's HELLO.
    func sendHello() {
        let body = HelloFrame(siteID: broker.config.siteID, incarnation: broker.incarnation,
                              address: broker.advertised ?? "", joining: !broker.config.join.isEmpty,
                              keyed: broker.config.groupKey != nil, nonce: nonce,
                              window: UInt32(broker.config.flowWindowBytes)).body
        FrameParser.append(.hello, body: body, to: handshakeOutput)
        scheduleFlush()
    }

    func sendAuth(_ mac: [UInt8]) {
        FrameParser.append(.auth, body: AuthFrame(mac: mac).body, to: handshakeOutput)
        scheduleFlush()
    }

    func sendActivate() {
        FrameParser.append(.activate, body: [], to: handshakeOutput)
        scheduleFlush()
    }

    /// A dialled connection finishes its connect before it reads: epoll may report the peer's HELLO
    /// (readable) in the same event as the completed connect (writable).
    override func handleEvents(_ events: EpollEvents) {
        if phase == .connecting {
            if let error = Socket.pendingError(descriptor) {
                close(reason: "connect failed: \(error)")
                return
            }
            phase = .handshaking
            Broker.configurePeerSocket(descriptor)
            sendHello()
        }
        super.handleEvents(events)
    }

    override var readsPerEvent: Int { 8 }

    override func didRead(bytes: Int) {
        guard phase == .active, let link else { return }
        link.heardSinceTick = true
    }

    override func handleFrame(_ frame: Frame) throws(WireError) {
        switch (phase, frame.type) {
        case (.active, .message):
            let header = try MessageHeader(body: frame.body)
            guard let link, try broker.isNew(header.group, .replication, UInt32(bitPattern: header.source),
                                              size: frame.totalSize, on: link) else { return }
            try broker.deliver(fromPeer: link, header,
                               payload: UnsafeRawBufferPointer(rebasing: frame.body[Wire.messageHeaderSize...]))
        case (.active, .heartbeat):
            break
        case (.active, .groupBind):
            broker.bind(group: try GroupBindFrame(body: frame.body), on: self)
        case (.active, .peerAck):
            try broker.peerAcknowledged(PeerAckFrame(body: frame.body), on: self)
        case (.active, .channel):
            let channel = try ChannelFrame(body: frame.body)
            guard let link, try broker.isNew(channel.group, .channel, UInt32(bitPattern: channel.source),
                                              size: frame.totalSize, on: link) else { return }
            try broker.channelFromPeer(link, channel)
        case (.active, .credit):
            link?.credited(try CreditFrame(body: frame.body))
        case (.active, .channelResult):
            broker.channelResultFromPeer(try ChannelResultFrame(body: frame.body))
        case (.active, .members):
            broker.membersFromPeer(try MembersFrame(body: frame.body), on: self)
        case (.active, .removeSite):
            broker.removeSite(try RemoveSiteFrame(body: frame.body).siteID, from: link)
        case (.active, .peerMaster):
            try broker.peerAnnouncedMaster(MasterFrame(peerBody: frame.body), on: self)
        case (.active, .peerReceiver):
            try broker.peerReceiver(PeerReceiverFrame(body: frame.body), on: self)
        case (.handshaking, .hello) where hello == nil:
            // The version before the layout: another version may lay the rest out differently.
            if let version = HelloFrame.version(of: frame.body), version != Wire.protocolVersion {
                return reject(.version, "peer speaks protocol version \(version), this broker speaks \(Wire.protocolVersion)")
            }
            let received = try HelloFrame(body: frame.body)
            hello = received
            broker.peerSaidHello(self, received)
        case (.handshaking, .auth) where hello != nil && awaitingAuth:
            broker.peerAuthenticated(self, try AuthFrame(body: frame.body))
        case (.handshaking, .activate) where hello != nil && !awaitingAuth && broker.config.siteID > (hello?.siteID ?? 0):
            broker.activate(self)
        case (_, .error):
            let error = try ErrorFrame(body: frame.body)
            closedQuietly = error.code == ErrorCode.duplicateLink.rawValue
            if [ErrorCode.auth, .siteConflict, .version, .unknownSite].map(\.rawValue).contains(error.code) {
                broker.logger.warning("peer refused the connection", ["peer": peerDescription, "reason": "\(error)"])
            }
            if error.code == ErrorCode.siteConflict.rawValue && !broker.config.join.isEmpty {
                broker.stopFatally("cannot join: \(error.reason)")
            }
            close(reason: "\(peerDescription) closed the connection: \(error)")
        default:
            throw .unexpected(type: frame.type, state: "in the \(phase) phase of a peer connection")
        }
    }

    override func pendingOutput() -> UnsafeRawBufferPointer {
        if !handshakeOutput.isEmpty { return handshakeOutput.readable }
        guard phase == .active, let link else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        link.refillWire()
        return link.wire.readable
    }

    override func didWrite(_ count: Int) {
        if !handshakeOutput.isEmpty {
            handshakeOutput.consume(count)
            return
        }
        guard let link else { return }
        link.wire.didWrite(count)
        link.lastSent = broker.now
    }

    /// Tells the other side why, then closes.
    func reject(_ code: ErrorCode, _ reason: String, quietly: Bool = false) {
        if quietly {
            broker.logger.debug("peer connection refused", ["reason": reason])
        } else {
            broker.logger.warning("peer connection refused", ["reason": reason])
        }
        writeErrorNow(code, reason)
        closedQuietly = quietly
        close(reason: reason)
    }

    override func protocolError(_ error: WireError) {
        broker.countBadFrame(peer: peerDescription, error)
        reject(error.code, error.description)
    }

    override func close(reason: String) {
        guard !isClosed else { return }
        super.close(reason: reason)
        handshakeOutput.clear()
        broker.peerConnectionClosed(self, reason: reason)
    }
}
