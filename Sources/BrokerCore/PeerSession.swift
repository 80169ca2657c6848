// One TCP connection to another broker, dialled or accepted. Both ends send HELLO first. The end with
// the lower site id (the arbiter) decides which connection becomes the link and says so with ACTIVATE;
// the other end sends data only after ACTIVATE, so no frame is ever written to a connection the arbiter
// will drop. Output: the handshake buffer first, then (once active) the link's wire, which its scheduler
// refills (PeerScheduler.swift).
import BrokerWire

final class PeerSession: Session {
    enum Phase { case connecting, handshaking, active }

    let outgoing: Bool
    var link: PeerLink?
    var phase: Phase
    var hello: HelloFrame?
    let handshakeOutput = ByteBuffer(capacity: 256)
    let deadline: UInt64
    /// Set when the closing end is a duplicate or replaced connection: no failure, no backoff.
    var closedQuietly = false
    /// The --join target this connection dialled (its site is learnt from the HELLO).
    let joinTarget: Int?
    /// Random per connection: the challenge the other side's AUTH must answer.
    let nonce: [UInt8]
    /// With a group key: the other side's AUTH has not been checked yet.
    var awaitingAuth = false
    /// With TLS: the site the peer's certificate names (or whose pin it matches); its HELLO must say the same.
    var certifiedSite: Int32?
    /// With TLS: "TLSv1.3 <cipher>", shown in stats once this connection is the link.
    var security: String?
    /// The highest protocol version both ends speak, known from the peer's HELLO.
    var protocolVersion = Wire.protocolVersion

    init(id: ConnectionID, core: Core, dialing link: PeerLink?, joinTarget: Int? = nil) {
        outgoing = link != nil || joinTarget != nil
        self.link = link
        self.joinTarget = joinTarget
        phase = outgoing ? .connecting : .handshaking
        deadline = core.now + core.handshakeTimeoutNanoseconds
        nonce = (0..<16).map { _ in UInt8.random(in: 0...255, using: &core.random) }
        super.init(id: id, core: core, maxMessage: core.config.maxMessageBytes, inputCapacity: 256 << 10)
    }

    /// Peer links read more per readiness event (a CREDIT waits behind whatever the socket holds: reading it a
    /// buffer per pass would stretch the credit loop to many passes).
    override public var readsPerEvent: Int { 8 }

    var peerDescription: String {
        if let site = link?.siteID ?? hello?.siteID { return "site \(site)" }
        return outgoing ? "outgoing" : "incoming"
    }

    /// Sends this broker's HELLO.
    func sendHello() {
        let body = HelloFrame(siteID: core.config.siteID, incarnation: core.incarnation,
                              address: core.membership.advertised ?? "", joining: !core.config.join.isEmpty,
                              keyed: core.config.groupKey != nil, nonce: nonce,
                              window: UInt32(core.config.flowWindowBytes)).body
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

    /// The dial completed: HELLO goes first.
    func connected() {
        guard phase == .connecting else { return }
        phase = .handshaking
        sendHello()
    }

    override func handleFrame(_ frame: Frame) throws(WireError) {
        switch (phase, frame.type) {
        case (.active, .message):
            let header = try MessageHeader(body: frame.body)
            guard let link, try core.isNew(header.group, .replication, UInt32(bitPattern: header.source),
                                            size: frame.totalSize, on: link) else { return }
            try core.deliver(fromPeer: link, header,
                             payload: UnsafeRawBufferPointer(rebasing: frame.body[Wire.messageHeaderSize...]))
        case (.active, .heartbeat):
            if let link, let heartbeat = try HeartbeatFrame(body: frame.body) { core.heartbeat(heartbeat, on: link) }
        case (.active, .groupBind):
            core.bind(group: try GroupBindFrame(body: frame.body), on: self)
        case (.active, .peerAck):
            try core.peerAcknowledged(PeerAckFrame(body: frame.body), on: self)
        case (.active, .channel):
            let channel = try ChannelFrame(body: frame.body)
            guard let link, try core.isNew(channel.group, .channel, UInt32(bitPattern: channel.source),
                                            size: frame.totalSize, on: link) else { return }
            try core.channelFromPeer(link, channel)
        case (.active, .credit):
            link?.credited(try CreditFrame(body: frame.body))
        case (.active, .channelResult):
            core.channelResultFromPeer(try ChannelResultFrame(body: frame.body))
        case (.active, .members):
            core.membersFromPeer(try MembersFrame(body: frame.body), on: self)
        case (.active, .removeSite):
            core.removeSite(try RemoveSiteFrame(body: frame.body).siteID, from: link)
        case (.active, .peerMaster):
            try core.peerAnnouncedMaster(MasterFrame(peerBody: frame.body), on: self)
        case (.active, .peerReceiver):
            try core.peerReceiver(PeerReceiverFrame(body: frame.body), on: self)
        case (.handshaking, .hello) where hello == nil:
            // The versions before the layout: another version may lay the rest out differently. The link speaks
            // the highest version both ends speak (each end computes the same from the two HELLOs).
            if let versions = HelloFrame.versions(of: frame.body) {
                guard let chosen = Wire.negotiate(versions) else {
                    return reject(.version, "peer speaks protocol version \(Wire.describe(versions)), this broker speaks "
                        + Wire.describe(Wire.protocolVersions))
                }
                protocolVersion = chosen
            }
            let received = try HelloFrame(body: frame.body)
            hello = received
            core.peerSaidHello(self, received)
        case (.handshaking, .auth) where hello != nil && awaitingAuth:
            core.peerAuthenticated(self, try AuthFrame(body: frame.body))
        case (.handshaking, .activate) where hello != nil && !awaitingAuth && core.config.siteID > (hello?.siteID ?? 0):
            core.activate(self)
        case (_, .error):
            let error = try ErrorFrame(body: frame.body)
            closedQuietly = error.code == ErrorCode.duplicateLink.rawValue
            if [ErrorCode.auth, .siteConflict, .version, .unknownSite, .tls].map(\.rawValue).contains(error.code) {
                core.logger.warning("peer refused the connection", ["peer": peerDescription, "reason": "\(error)"])
            }
            if error.code == ErrorCode.siteConflict.rawValue && !core.config.join.isEmpty {
                core.stopFatally("cannot join: \(error.reason)")
            }
            close(reason: "\(peerDescription) closed the connection: \(error)")
        default:
            throw .unexpected(type: frame.type, state: "in the \(phase) phase of a peer connection")
        }
    }

    override public func pendingOutput() -> UnsafeRawBufferPointer {
        if !handshakeOutput.isEmpty { return handshakeOutput.readable }
        guard phase == .active, let link else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        link.refillWire()
        return link.wire.readable
    }

    override public func didWrite(_ count: Int) {
        if !handshakeOutput.isEmpty {
            handshakeOutput.consume(count)
            return
        }
        guard let link else { return }
        link.wire.didWrite(count)
        link.lastSent = core.now
        link.wroteWire(count, now: core.now)
    }

    /// Tells the other side why, then closes.
    func reject(_ code: ErrorCode, _ reason: String, quietly: Bool = false) {
        if quietly {
            core.logger.debug("peer connection refused", ["reason": reason])
        } else {
            core.logger.warning("peer connection refused", ["reason": reason])
        }
        closedQuietly = quietly
        close(reason: reason, lastWords: Self.errorFrame(code, reason))
    }

    override func protocolError(_ error: WireError) {
        if phase != .active, hello == nil, Self.startsWithTLSRecord(input.readable) {
            // A TLS ClientHello where a HELLO was due: the peer has TLS configured and this broker has not.
            core.counters.tlsFailures += 1
            return reject(.tls, "the peer speaks TLS and this broker has no TLS configured (--tls-cert, --tls-key, "
                + "--tls-ca or --tls-pin): every broker of the group needs the same choice")
        }
        core.countBadFrame(peer: peerDescription, error)
        reject(error.code, error.description)
    }

    /// Whether `bytes` begin as a TLS handshake record does (content type 22, version 3.x).
    static func startsWithTLSRecord(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 3 && bytes[0] == 0x16 && bytes[1] == 0x03 && bytes[2] <= 0x04
    }

    override func close(reason: String, lastWords: [UInt8] = []) {
        guard !isClosed else { return }
        super.close(reason: reason, lastWords: lastWords)
        handshakeOutput.clear()
        core.peerConnectionClosed(self, reason: reason)
    }
}
