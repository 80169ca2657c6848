// A broker in the simulation: the same core the daemon runs, under a shell of memory instead of sockets.
// Each pass does what the daemon's duty cycle does (Broker+DutyCycle.swift): backpressure and credit, reads
// (every connection with bytes, unless its reading is paused), the rings phase, timers, then a write for every
// connection with output; and it carries out the core's actions as the daemon does (Broker.swift).
import BrokerCore
import BrokerWire

final class SimBroker {
    let site: Int32
    let config: CoreConfig
    private(set) var core: Core
    /// The membership file, kept across crashes.
    var membershipFile: [MemberRecord] = []
    var alive = true
    /// Takes no turn until then (a stopped process: SIGSTOP).
    var pausedUntil: SimTime = 0
    var crashes = 0
    /// One end of a connection per core session.
    private(set) var sockets: [ConnectionID: SimSocket] = [:]
    /// The rings' memory of each client that has rings (freed when the world ends).
    unowned let world: Simulation

    final class SimSocket {
        let connection: SimConnection
        let side: SimOwner
        let session: Session
        var connecting: Bool
        var readingPaused = false
        /// Out of the shell's read interest for good (a hung-up client whose ring is still drained).
        var stopWatching = false
        /// A write did not take everything: write again next pass (EPOLLOUT).
        var blocked = false

        init(connection: SimConnection, side: SimOwner, session: Session, connecting: Bool) {
            self.connection = connection
            self.side = side
            self.session = session
            self.connecting = connecting
        }
    }

    init(site: Int32, config: CoreConfig, world: Simulation) {
        self.site = site
        self.config = config
        self.world = world
        core = Self.makeCore(config, world: world, remembered: [])
    }

    private static func makeCore(_ config: CoreConfig, world: Simulation, remembered: [MemberRecord]) -> Core {
        Core(config: config, now: world.now, incarnation: world.random.next() | 1, seed: world.random.next(),
             logger: Logger(label: "site\(config.siteID)", level: world.logLevel, sink: world.logSink),
             remembered: remembered)
    }

    var address: String { Simulation.address(of: site) }

    // MARK: life

    /// The process dies: its sockets close (the kernel sends FIN; what it had not read is lost).
    func crash() {
        guard alive else { return }
        alive = false
        crashes += 1
        for id in sockets.keys.sorted() {
            let socket = sockets[id]!
            socket.connection.outgoing(from: socket.side).finish(now: world.now, delay: socket.connection.delay)
            socket.connection.incoming(to: socket.side).reset()
        }
        sockets.removeAll()
        discardCore()
    }

    /// Lets go of the dead core's objects: its sessions, links, groups and clients refer to one another, so
    /// they are closed first (what that asks of a shell goes nowhere: the process is gone). Without this, every
    /// crash and every run left its whole graph behind, about 19 MB a seed.
    func discardCore() {
        core.closeAll(reason: "the process died")
        core.takeActions { _ in }
        _ = core.takeDirty { _ in }
    }

    /// Started again, with the membership file it wrote.
    func restart() {
        guard !alive else { return }
        alive = true
        pausedUntil = 0
        core = Self.makeCore(config, world: world, remembered: membershipFile)
    }

    // MARK: connections

    /// A client connects to this broker's local socket; nil when refused (the client sees the end).
    func acceptClient(_ connection: SimConnection, pid: Int32) {
        switch core.openClient(pid: pid) {
        case .success(let session):
            sockets[session.id] = SimSocket(connection: connection, side: connection.b, session: session, connecting: false)
        case .failure(let refusal):
            refusal.lastWords.withUnsafeBytes { _ = connection.bToA.write($0, now: world.now, delay: 0) }
            connection.bToA.finish(now: world.now, delay: 0)
        }
        performActions()
    }

    /// A peer's dial reached this broker's listener.
    func acceptPeer(_ connection: SimConnection) {
        let session = core.openAcceptedPeer()
        sockets[session.id] = SimSocket(connection: connection, side: connection.b, session: session, connecting: false)
        if core.needsLocalAddress { core.learnLocalAddress(address, from: "an incoming peer connection") }
    }

    /// A dial this broker made completed (`connection`), or failed (nil: refused).
    func dialCompleted(_ id: ConnectionID, _ connection: SimConnection?) {
        guard alive, let socket = sockets[id] else { return }
        guard let connection else {
            sockets[id] = nil
            core.failed(socket.session, reason: "connection refused")
            performActions()
            return
        }
        _ = connection
        socket.connecting = false
        core.connected(socket.session)
        performActions()
    }

    // MARK: the pass

    /// One pass of the duty cycle at `world.now`.
    func pass() {
        guard alive, world.now >= pausedUntil else { return }
        core.now = world.now
        core.applyBackpressure()
        core.returnCredits()
        for id in sockets.keys.sorted() {
            guard let socket = sockets[id], !socket.connecting, !socket.stopWatching else { continue }
            read(socket)
        }
        performActions()
        _ = core.serviceRings()
        core.takeRoomBells { _ in }
        core.runTimers()
        performActions()
        for id in sockets.keys.sorted() where sockets[id]!.blocked { write(sockets[id]!) }
        core.takeDirty { session in
            if let socket = sockets[session.id] { write(socket) }
        }
        performActions()
    }

    private func read(_ socket: SimSocket) {
        let stream = socket.connection.incoming(to: socket.side)
        if stream.wasReset { return core.failed(socket.session, reason: "connection reset") }
        // A paused socket is still read at its end (the daemon reads a hang-up while paused).
        if socket.readingPaused && !stream.finished { return }
        var reads = socket.session.readsPerEvent
        while stream.unread > 0, reads > 0, !socket.session.isClosed {
            let space = socket.session.readSpace()
            let count = stream.read(into: space)
            core.received(socket.session, bytes: count)
            reads -= 1
        }
        if !socket.session.isClosed, stream.atEnd(now: world.now) { core.endOfInput(socket.session) }
    }

    private func write(_ socket: SimSocket) {
        guard !socket.connecting else { return }
        let stream = socket.connection.outgoing(from: socket.side)
        _ = socket.session.publishRing()
        socket.blocked = false
        while !socket.session.isClosed {
            let output = socket.session.pendingOutput()
            guard output.count > 0 else { return }
            let written = stream.write(output, now: world.now, delay: socket.connection.delay)
            guard written > 0 else {
                socket.blocked = true
                return
            }
            socket.session.didWrite(written)
            world.trace(written)
            if written < output.count {
                socket.blocked = true
                return
            }
        }
    }

    // MARK: actions

    func performActions() {
        core.takeActions { action in
            world.trace(action)
            switch action {
            case .close(let id, let lastWords):
                guard let socket = sockets.removeValue(forKey: id) else { return }
                if case .client(let index) = socket.connection.a { world.clientClosed(world.clients[index]) }
                let out = socket.connection.outgoing(from: socket.side)
                lastWords.withUnsafeBytes { _ = out.write($0, now: world.now, delay: socket.connection.delay) }
                out.finish(now: world.now, delay: socket.connection.delay)
            case .setReading(let id, let paused):
                sockets[id]?.readingPaused = paused
            case .stopWatching(let id):
                sockets[id]?.stopWatching = true
            case .welcome(let id, let welcome):
                guard let socket = sockets[id] else { return }
                welcomeClient(socket, welcome)
            case .dial(let target, let address):
                guard let session = core.openDial(site: target, address: address) else { return }
                startDial(session, to: address)
            case .dialJoin(let index, let address):
                guard let session = core.openJoinDial(index: index) else { return }
                startDial(session, to: address)
            case .saveMembership(let records):
                membershipFile = records
            case .trimMemory:
                break
            case .fatal(let reason):
                world.fatal(site: site, reason)
            }
        }
    }

    private func startDial(_ session: Session, to address: String) {
        let connection = SimConnection(a: .broker(site), b: .broker(Simulation.site(of: address) ?? 0),
                                       capacity: world.peerSocketBytes, delay: world.latency(site, Simulation.site(of: address) ?? 0))
        sockets[session.id] = SimSocket(connection: connection, side: connection.a, session: session, connecting: true)
        world.connect(connection, dialer: site, id: session.id)
    }

    /// WELCOME with rings made of plain memory (the simulated client maps the same bytes).
    private func welcomeClient(_ socket: SimSocket, _ welcome: WelcomeFrame) {
        let out = socket.connection.outgoing(from: socket.side)
        let bytes = FrameParser.encode(.welcome, body: welcome.body)
        bytes.withUnsafeBytes { _ = out.write($0, now: world.now, delay: 0) }
        guard welcome.ringBytes > 0, case .client(let index) = socket.connection.a else {
            return core.welcomed(socket.session, rings: nil)
        }
        let ringBytes = Int(welcome.ringBytes)
        let base = world.allocateSegment(bytes: RingLayout.segmentBytes(ringBytes: ringBytes))
        RingLayout.initialize(base, ringBytes: ringBytes)
        world.clients[index].attachRings(base: base, ringBytes: ringBytes, connection: socket.connection)
        core.welcomed(socket.session, rings: ClientRings(base: base, ringBytes: ringBytes))
    }
}

extension SimBroker {
    /// The peer connections this broker dialled (each peer connection once, from its dialling end).
    var peerConnectionsDialled: [SimConnection] {
        sockets.keys.sorted().compactMap { id in
            let socket = sockets[id]!
            guard !socket.connecting, socket.side == socket.connection.a,
                  case .broker = socket.connection.b else { return nil }
            return socket.connection
        }
    }

    /// When the broker last went on after a stop (its receivers could not be told anything while stopped).
    var resumedAt: SimTime { pausedUntil }
}
