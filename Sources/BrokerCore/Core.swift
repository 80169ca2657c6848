// The broker as a state machine. Events come in (a connection opened, bytes read on it, its end, a dial's
// outcome, the rings phase, the timers at time `now`); actions go out (`CoreAction`: closes, dials, WELCOME with
// rings, reading paused, the membership to store) and the hot path's needs are read off the core (connections to
// flush, doorbells to ring). It reads no clock and makes no system call: the daemon's shell (BrokerDaemon) and the
// simulator (BrokerSim) drive the same core, one with sockets, the other in memory on virtual time.
//
// Its parts, each a type with its state: Membership (sites, links, dials, the advertised address), GroupTable
// (groups, their slots and congestion), ClientTable (local clients and rings), Counters. What crosses them (routing,
// handshakes, acks, credit, channels) is in the Core+*.swift files, one responsibility each.
import BrokerWire

public final class Core {
    public let config: CoreConfig
    public internal(set) var logger: Logger
    /// Random per start: tells peers a restarted broker from a duplicate connection.
    public let incarnation: UInt64
    var random: CoreRandom
    /// The time the shell last gave: monotonic nanoseconds. Everything the core decides with time uses it.
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-builds ipc, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) public var now: UInt64
    let startedAt: UInt64

    let membership: Membership
    let groups: GroupTable
    let clients: ClientTable
    // Unchecked exclusivity: per-message counters of the loop's thread (scripts/compare-builds ipc, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) var counters = Counters()

    /// Sessions by connection id.
    var sessions: [ConnectionID: Session] = [:]
    private var nextConnectionID: ConnectionID = 1
    /// What the shell is asked to do, in order.
    private(set) var actions: [CoreAction] = []
    /// Sessions with new output this pass.
    private var dirty: [Session] = []
    /// Ring clients whose producer waits for the room this pass made.
    private var roomBells: [Session] = []

    /// Credit goes back to a peer's flow in batches of this many bytes (a sixteenth of the window granted: a
    /// CREDIT waits behind the other direction's data, and small batches keep the peer's window open).
    let creditBatch: Int
    var backpressureBytes: Int { min(config.peerQueueBytes / 2, 256 << 10) }
    var heartbeatNanoseconds: UInt64 { UInt64(config.heartbeatMilliseconds) * 1_000_000 }
    var handshakeTimeoutNanoseconds: UInt64 { max(3 * heartbeatNanoseconds, 1_000_000_000) }
    /// The timer period: a quarter of the heartbeat, within 5 ... 50 ms.
    public var tickNanoseconds: UInt64 { UInt64(max(5, min(50, config.heartbeatMilliseconds / 4))) * 1_000_000 }
    public internal(set) var nextTickAt: UInt64 = 0
    var lastTickAt: UInt64 = 0
    /// When to hand freed memory back to the system after clients left (0: nothing to hand back).
    var trimMemoryAt: UInt64 = 0
    /// Set when the broker must stop with a failure (a duplicate site id).
    public private(set) var fatalReason: String?

    /// A core for `config`, starting at `now`, knowing the sites `remembered` from an earlier run.
    public init(config: CoreConfig, now: UInt64, incarnation: UInt64, seed: UInt64, logger: Logger,
                remembered: [MemberRecord] = []) {
        self.config = config
        self.logger = logger
        self.incarnation = incarnation
        self.now = now
        startedAt = now
        random = CoreRandom(seed: seed)
        creditBatch = config.flowWindowBytes / 16
        membership = Membership(config: config)
        groups = GroupTable()
        clients = ClientTable()
        actions.reserveCapacity(64)
        dirty.reserveCapacity(1024)
        for peer in config.peers.sorted(by: { $0.siteID < $1.siteID }) {
            addLink(siteID: peer.siteID, address: peer.address, origin: .configured, verified: true, persist: false)
        }
        for record in remembered where membership.links[record.site_id] == nil && record.site_id != config.siteID {
            let link = addLink(siteID: record.site_id, address: record.address, origin: record.origin, verified: true,
                               persist: false)
            link?.removed = record.removed
        }
    }

    // MARK: actions and the hot path's lists

    /// Asks the shell for `action`.
    func act(_ action: CoreAction) { actions.append(action) }

    /// Hands the actions asked for since the last call to `body`, in order.
    public func takeActions(_ body: (CoreAction) -> Void) {
        var index = 0
        // An action's handling may call back into the core and add more: they are taken too.
        while index < actions.count {
            body(actions[index])
            index += 1
        }
        actions.removeAll(keepingCapacity: true)
    }

    @inline(__always)
    func markDirty(_ session: Session) {
        session.isDirty = true
        dirty.append(session)
    }

    /// Hands every session with new output to `body` (the shell writes it), once; returns how many.
    @discardableResult
    public func takeDirty(_ body: (Session) -> Void) -> Int {
        var index = 0
        while index < dirty.count {
            let session = dirty[index]
            session.isDirty = false
            if !session.isClosed { body(session) }
            index += 1
        }
        dirty.removeAll(keepingCapacity: true)
        return index
    }

    /// Hands every ring client whose producer waits for room (made this pass) to `body`: ring its room doorbell.
    public func takeRoomBells(_ body: (Session) -> Void) {
        for session in roomBells where !session.isClosed { body(session) }
        roomBells.removeAll(keepingCapacity: true)
    }

    func ringRoomBell(_ client: ClientSession) { roomBells.append(client) }

    // MARK: connections

    private func newID() -> ConnectionID {
        defer { nextConnectionID &+= 1 }
        return nextConnectionID
    }

    /// A local client connected (`pid` from SO_PEERCRED, 0 when unknown). Refused over --max-clients: the
    /// shell writes the refusal's ERROR and closes.
    public func openClient(pid: Int32) -> Result<Session, ClientRefusal> {
        guard clients.byID.count < config.maxClients else {
            counters.clientsRefused += 1
            if counters.clientsRefused == 1 || counters.clientsRefused % 1000 == 0 {
                logger.warning("local client refused: --max-clients reached", [
                    "max_clients": "\(config.maxClients)", "clients_refused": "\(counters.clientsRefused)"])
            }
            return .failure(ClientRefusal(lastWords: Session.errorFrame(
                .clientLimit, "this broker serves \(config.maxClients) clients already (--max-clients)")))
        }
        let client = ClientSession(id: newID(), core: self, clientID: clients.nextClientID, pid: pid)
        clients.nextClientID &+= 1
        clients.byID[client.clientID] = client
        sessions[client.id] = client
        logger.debug("client connected", ["client.id": "\(client.clientID)", "client.pid": "\(pid)"])
        return .success(client)
    }

    /// A client's local connection was refused by the shell before it became a session (its allow list).
    public func countRefusedClient() { counters.clientsRefused += 1 }

    /// A peer connection accepted on the listener: no site yet (its HELLO says which).
    public func openAcceptedPeer() -> Session {
        let session = PeerSession(id: newID(), core: self, dialing: nil, joinTarget: nil)
        sessions[session.id] = session
        membership.handshaking.append(session)
        session.sendHello()
        return session
    }

    /// The shell is about to connect to `site` at `address` (a `.dial` it was asked for): the session, or nil
    /// when the link no longer wants it (removed, moved to another address, or linked or dialling meanwhile).
    public func openDial(site: Int32, address: String) -> Session? {
        guard let link = membership.links[site], !link.removed, link.dialing == nil, link.address?.text == address,
              link.connection == nil || link.address?.verified == false else { return nil }
        let session = PeerSession(id: newID(), core: self, dialing: link, joinTarget: nil)
        sessions[session.id] = session
        membership.handshaking.append(session)
        link.dialing = session
        link.address?.failure = nil
        logger.trace("dialling peer", ["peer.site_id": "\(link.siteID)", "peer.address": address])
        return session
    }

    /// The shell is about to connect to --join target `index` (a `.dialJoin`); nil when no longer needed.
    public func openJoinDial(index: Int) -> Session? {
        guard membership.joinTargets.indices.contains(index),
              !membership.linkList.contains(where: { $0.connection != nil }) else { return nil }
        let session = PeerSession(id: newID(), core: self, dialing: nil, joinTarget: index)
        sessions[session.id] = session
        membership.handshaking.append(session)
        membership.joinDials.append(session)
        return session
    }

    /// A dialled connection completed its connect.
    public func connected(_ session: Session) {
        (session as? PeerSession)?.connected()
    }

    /// `count` bytes were read into `session.input` (at `readSpace()`): every whole frame there is handled, in
    /// place, until one is held (a paused producer's: handled when it resumes, by a call with `count` 0) or the
    /// session closes. A bad frame closes the session (`protocolError`).
    public func received(_ session: Session, bytes count: Int) {
        let input = session.input
        if count > 0 {
            input.commit(count)
            if let peer = session as? PeerSession, peer.phase == .active { peer.link?.heardSinceTick = true }
        }
        do {
            while !session.isClosed, let frame = try FrameParser.next(in: input.readable, maxMessage: session.maxMessage) {
                try session.handleFrame(frame)
                if session.isClosed || session.inputHeld { return }
                input.consume(frame.totalSize)
            }
        } catch {
            session.protocolError(error)
            return
        }
        input.shrinkIfIdle()
    }

    /// The other side closed its end (everything it sent was read).
    public func endOfInput(_ session: Session) {
        guard !session.isClosed else { return }
        session.endOfInput()
    }

    /// Reading or writing failed, or the connect did.
    public func failed(_ session: Session, reason: String) {
        session.close(reason: reason)
    }

    /// The shell sent a client's WELCOME, with rings (their memory) or without.
    public func welcomed(_ session: Session, rings: ClientRings?) {
        guard let client = session as? ClientSession, !client.isClosed else { return }
        welcomed(client, rings: rings)
    }

    func sessionClosed(_ session: Session, lastWords: [UInt8]) {
        sessions[session.id] = nil
        act(.close(session.id, lastWords: lastWords))
    }

    /// Every connection closes (the broker stops).
    public func closeAll(reason: String) {
        for session in Array(sessions.values).sorted(by: { $0.id < $1.id }) { session.close(reason: reason) }
    }

    /// A fatal condition (a duplicate site id): the broker stops, and its process exits 1.
    func stopFatally(_ reason: String) {
        logger.error(reason)
        fatalReason = reason
        act(.fatal(reason))
    }
}

/// The broker's counters that belong to no one part.
struct Counters {
    var badFrames = 0
    var clientsRefused = 0
    var unroutable = 0
    var misrouted = 0
    var routedMessages = 0
    var channelMessages = 0
    var channelRequests = 0
    var channelReplies = 0
    var channelNoSubscriber = 0
    var channelOrphanReplies = 0
    var channelTimeouts = 0
    var acksReceived = 0
    var permanentAcked = 0
    var permanentAckFailures = 0
    /// Peer connections refused for their TLS: handshakes failed, certificates refused, TLS on one end only.
    var tlsFailures = 0
}

/// Local clients: by their id, those with rings (the rings phase serves them in turn), and the next id.
final class ClientTable {
    var byID: [UInt32: ClientSession] = [:]
    var ringClients: [ClientSession] = []
    /// Where the rings phase starts this pass (one client further each pass).
    var ringCursor = 0
    var nextClientID: UInt32 = 1
}
