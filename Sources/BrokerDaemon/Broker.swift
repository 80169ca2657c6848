// The broker's shell: the event loop, the listeners, the sockets and rings of every connection, name
// resolution, the membership file, the clock. It feeds the core (BrokerCore) what happened and carries out
// what the core asks for (`CoreAction`); every decision is the core's. Everything runs on the loop's thread;
// only `requestStop` may be called from elsewhere.
#if canImport(Glibc)
import Glibc
#endif
@_exported import BrokerCore
import BrokerSystem
import BrokerWire
import Synchronization

public final class Broker {
    public let config: BrokerConfig
    let logger: Logger
    let loop: EventLoop
    /// The broker's decisions: routing, acks, credit, membership, handshakes, timers.
    let core: Core
    /// Sockets by the core's connection ids.
    var sockets: [ConnectionID: SessionSocket] = [:]
    var listeners: [Listener] = []
    var ownedSocketPaths: [String] = []
    public private(set) var peerPort: UInt16?
    /// Dials asked for by the core: names resolved off the loop, then connected.
    let dialer: Dialer
    let membershipFile: MembershipFile
    var acceptFailures = 0
    /// A descriptor held back (on /dev/null) for the admin and peer listeners when the rest are used up.
    var reserveDescriptor: OwnedDescriptor?
    /// The parent at start, for --exit-with-parent.
    let parentPID = getppid()
    /// TLS for peer links (--tls-cert); nil: plain links.
    let peerTLS: PeerTLS?
    /// TLS connections whose session holds plain bytes the core could not take when they were decrypted.
    var tlsBacklog: [SessionSocket] = []
    /// The backlog being drained (drainTLSBacklog).
    var tlsBacklogPass: [SessionSocket] = []

    /// Connections to the --metrics-listen port being answered.
    var metricsConnections: [MetricsConnection] = []
    /// The port --metrics-listen bound (for tests that listen on port 0).
    public private(set) var metricsPort: UInt16?

    /// systemd's readiness and watchdog (NOTIFY_SOCKET); does nothing outside a notify service.
    let notifier: SystemdNotifier

    /// Stops the loop from any thread (signal handlers, tests).
    public let stopper: Stopper

    /// Validates the config and creates the loop and the core; `start` opens the sockets.
    public init(config: BrokerConfig, logger: Logger? = nil) throws {
        try config.validate()
        self.config = config
        let logger = logger ?? Logger(label: "repbrokerd", level: config.logLevel, format: config.logFormat)
        self.logger = logger
        loop = try EventLoop()
        stopper = Stopper(wakeup: loop.wakeup)
        membershipFile = MembershipFile(config: config, logger: logger)
        let maxClients = config.maxClients ?? Self.defaultMaxClients(descriptorLimit: Posix.descriptorLimit())
        core = Core(config: config.coreConfig(maxClients: maxClients), now: Posix.monotonicNanoseconds(),
                    incarnation: UInt64.random(in: 1...UInt64.max), seed: UInt64.random(in: 1...UInt64.max),
                    logger: logger, remembered: membershipFile.load())
        dialer = Dialer(logger: logger)
        notifier = SystemdNotifier(environment: SystemdNotifier.processEnvironment(), logger: logger)
        do { peerTLS = try config.tls.map(PeerTLS.init) } catch { throw BrokerFailure(reason: "TLS: \(error)") }
    }

    /// Opens the peer listener and both Unix sockets; throws with a clear reason when one cannot be had.
    public func start() throws {
        if let listen = config.listen {
            let socket = try Socket.listenTCP(SocketAddress(listen))
            peerPort = Socket.localPort(socket.number)
            listeners.append(try Listener(socket, kind: .peers, broker: self))
        }
        if let metricsListen = config.metricsListen {
            let socket = try Socket.listenTCP(SocketAddress(metricsListen))
            metricsPort = Socket.localPort(socket.number)
            listeners.append(try Listener(socket, kind: .metrics, broker: self))
        }
        for (path, kind) in [(config.socketPath, Listener.Kind.clients), (config.adminSocketPath, .admin)] {
            try SocketPath.prepare(path)
            let socket = try Socket.listenUnix(path: path, mode: mode_t(config.socketMode))
            ownedSocketPaths.append(path)
            if let group = config.socketGroup, chown(path, uid_t.max, gid_t(group)) != 0 {
                throw SystemError("chown(\(path), group \(group))", .current)
            }
            listeners.append(try Listener(socket, kind: kind, broker: self))
        }
        logger.info("broker started", [
            "max_clients": "\(core.config.maxClients)", "descriptor_limit": "\(Posix.descriptorLimit())",
            "site_id": "\(config.siteID)", "listen": config.listen ?? "-", "socket": config.socketPath,
            "advertise": core.advertised
                ?? (config.listen == nil ? "-" : "(the local address of the first peer connection)"),
            "admin_socket": config.adminSocketPath, "peers": "\(core.sites().count)",
            "metrics": config.metricsListen.map { "http://\($0)/metrics" } ?? "-",
            "peer_links": peerTLS.map { $0.settings.ca != nil ? "TLS 1.3 (CA)" : "TLS 1.3 (pinned)" } ?? "plain",
        ])
        let summary = core.linkSummary
        notifier.ready(peersUp: summary.peersUp, peersKnown: summary.peersKnown, clients: summary.clients,
                       now: Posix.monotonicNanoseconds())
    }

    public struct BrokerFailure: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    /// The broker's figures, for the admin socket.
    func stats() -> BrokerStats { core.stats(pid: getpid(), acceptFailures: acceptFailures) }

    // MARK: connections

    /// Whether the process at the other end of a local socket may use it (SO_PEERCRED against the allow lists).
    func mayConnect(_ fd: CInt) -> Bool {
        guard !config.allowUIDs.isEmpty || !config.allowGIDs.isEmpty else { return true }
        guard let credentials = Socket.peerCredentials(fd) else { return false }
        return credentials.uid == getuid() || config.allowUIDs.contains(UInt32(credentials.uid))
            || config.allowGIDs.contains(UInt32(credentials.gid))
    }

    func accepted(_ socket: OwnedDescriptor, on kind: Listener.Kind) {
        let fd = socket.number
        if (kind == .clients || kind == .admin) && !mayConnect(fd) {
            let credentials = Socket.peerCredentials(fd)
            core.countRefusedClient()
            logger.warning("local connection refused: not in the allow list", [
                "client.pid": "\(credentials?.pid ?? 0)", "client.uid": "\(credentials?.uid ?? 0)",
                "client.gid": "\(credentials?.gid ?? 0)",
            ])
            Self.writeBestEffort(FrameParser.encode(.error, body: ErrorFrame(
                code: .notAllowed, reason: "uid \(credentials?.uid ?? 0) is not allowed to use this broker").body), to: fd)
            return
        }
        switch kind {
        case .peers:
            Self.configurePeerSocket(fd)
            learnLocalAddress(of: fd, connectionTo: "an incoming peer connection")
            serve(socket, core.openAcceptedPeer(), peer: true)
        case .clients:
            switch core.openClient(pid: Socket.peerCredentials(fd)?.pid ?? 0) {
            case .success(let session): serve(socket, session)
            case .failure(let refusal): Self.writeBestEffort(refusal.lastWords, to: fd)
            }
        case .admin:
            do { _ = try AdminConnection(socket, broker: self) } catch {
                logger.warning("cannot serve an accepted connection: \(error)")
            }
        case .metrics:
            guard metricsConnections.count < MetricsConnection.maxConnections else { return }  // closed by letting go
            do { metricsConnections.append(try MetricsConnection(socket, broker: self, now: Posix.monotonicNanoseconds())) } catch {
                logger.warning("cannot serve an accepted connection: \(error)")
            }
        }
        performActions()
    }

    /// Puts `socket` on the loop as `session`'s (a `peer` connection with a TLS session when TLS is configured:
    /// dialled ones connect, accepted ones accept); when it cannot be, the session fails (the core forgets it).
    func serve(_ socket: OwnedDescriptor, _ session: Session, connecting: Bool = false, peer: Bool = false) {
        do {
            let tls = try peer ? peerTLS.map { TLSLink(try $0.session(server: !connecting), server: !connecting) } : nil
            sockets[session.id] = try SessionSocket(socket, session: session, broker: self, connecting: connecting,
                                                    tls: tls)
        } catch {
            core.failed(session, reason: "cannot serve the connection: \(error)")
        }
    }

    /// `socket`'s TLS session holds plain bytes its core session could not take yet: they are handed over at
    /// the start of a later pass (`drainTLSBacklog`).
    func backlogTLS(_ socket: SessionSocket, _ tls: TLSLink) {
        guard !tls.backlogged else { return }
        tls.backlogged = true
        tlsBacklog.append(socket)
    }

    /// Hands the core what waits in TLS sessions, for the connections that can take it now; returns how many did.
    func drainTLSBacklog() -> Int {
        guard !tlsBacklog.isEmpty else { return 0 }
        // The two lists trade places, so that neither is copied (the pass may add to the backlog again).
        swap(&tlsBacklog, &tlsBacklogPass)
        defer { tlsBacklogPass.removeAll(keepingCapacity: true) }
        var drained = 0
        for socket in tlsBacklogPass {
            guard let tls = socket.tls, !socket.session.isClosed else { continue }
            if socket.readingPaused || socket.session.inputHeld {
                tlsBacklog.append(socket)
                continue
            }
            socket.drain(tls)
            drained += 1
        }
        if drained > 0 { performActions() }
        return drained
    }

    /// Reads the TLS certificate, key and CA again (SIGHUP, `repbroker reload-tls`): new connections use them,
    /// links up keep their sessions. Throws the reason when they cannot be loaded (the old ones stay).
    func reloadTLS() throws {
        guard let peerTLS else { throw BrokerFailure(reason: "this broker has no TLS configured (--tls-cert)") }
        do { try peerTLS.reload() } catch {
            logger.error("TLS reload failed: the certificates in use stay", ["reason": error.reason])
            throw BrokerFailure(reason: error.reason)
        }
        logger.info("TLS certificates reloaded: new peer connections use them", [
            "certificate": peerTLS.settings.certificate])
    }

    /// With a wildcard --listen and no --advertise: tells the core the local address of a peer connection.
    func learnLocalAddress(of fd: CInt, connectionTo peer: String) {
        guard core.needsLocalAddress, let port = peerPort, let local = SocketAddress.local(of: fd, port: port) else { return }
        core.learnLocalAddress(local.text, from: peer)
    }

    // MARK: actions

    /// Carries out what the core asked for, in order.
    func performActions() {
        core.takeActions { action in
            switch action {
            case .close(let id, let lastWords):
                sockets.removeValue(forKey: id)?.close(lastWords: lastWords)
            case .setReading(let id, let paused):
                sockets[id]?.setReadingPaused(paused)
            case .stopWatching(let id):
                if let socket = sockets[id] { loop.stopWatching(socket.descriptor.number) }
            case .welcome(let id, let welcome):
                guard let socket = sockets[id] else { return }
                welcomeClient(socket, welcome)
            case .dial(let site, let address):
                dialer.dial(.site(site), address, now: core.now, broker: self)
            case .dialJoin(let index, let address):
                dialer.dial(.join(index), address, now: core.now, broker: self)
            case .saveMembership(let records):
                membershipFile.save(records)
            case .trimMemory:
                Posix.releaseFreedMemory()
            case .fatal:
                requestStop()
            }
        }
    }

    /// Sends WELCOME: with rings (a shared segment and two doorbells, passed with SCM_RIGHTS) when the core
    /// granted some and they can be made; with ring_bytes 0 otherwise.
    private func welcomeClient(_ socket: SessionSocket, _ welcome: WelcomeFrame) {
        let session = socket.session
        if welcome.ringBytes > 0 {
            do {
                let ringBytes = Int(welcome.ringBytes)
                let (segment, memfd) = try SharedSegment.create(size: RingLayout.segmentBytes(ringBytes: ringBytes),
                                                                name: "repbroker-client-\(session.id)")
                RingLayout.initialize(segment.base, ringBytes: ringBytes)
                let data = try EventFd()
                let room = try EventFd()
                let bytes = FrameParser.encode(.welcome, body: welcome.body)
                // The memfd is closed once sent (the client holds its own copy); until then it is kept in reach.
                let sent = try withExtendedLifetime(memfd) {
                    try Socket.send(bytes, with: [memfd.number, loop.wakeup.descriptor, data.descriptor, room.descriptor],
                                    on: socket.descriptor.number)
                }
                guard sent == bytes.count else {
                    return core.failed(session, reason: "WELCOME did not fit the socket's send buffer")
                }
                socket.rings = (segment, data, room)
                core.welcomed(session, rings: ClientRings(base: segment.base, ringBytes: ringBytes))
                return
            } catch {
                logger.warning("cannot make shared-memory rings: \(error)")
            }
        }
        var plain = welcome
        plain.ringBytes = 0
        let bytes = FrameParser.encode(.welcome, body: plain.body)
        let written = bytes.withUnsafeBytes { try? Posix.write(descriptor: socket.descriptor.number, from: $0) }
        guard case .processed(bytes.count)? = written else {
            return core.failed(session, reason: "cannot write WELCOME")
        }
        core.welcomed(session, rings: nil)
    }

    /// Writes `bytes` if the socket takes them at once (a refusal's ERROR before closing).
    static func writeBestEffort(_ bytes: [UInt8], to fd: CInt) {
        guard !bytes.isEmpty else { return }
        _ = bytes.withUnsafeBytes { try? Posix.write(descriptor: fd, from: $0) }
    }

    /// Options of every peer socket: no Nagle delay, and a short kernel send queue (TCP_NOTSENT_LOWAT).
    static func configurePeerSocket(_ fd: CInt) {
        Socket.setNoDelay(fd)
        Socket.setNotSentLowWatermark(fd, bytes: CInt(peerNotSentLowWatermark))
    }

    /// Unsent bytes the kernel may hold per peer socket before the broker's queue holds the rest.
    static let peerNotSentLowWatermark = 128 << 10

    /// Descriptors per local client at most (its socket, and with rings its doorbells), and those kept for the
    /// listeners, peer links and admin connections: the default --max-clients leaves them free.
    static func defaultMaxClients(descriptorLimit: Int) -> Int {
        max(8, min(4096, (descriptorLimit - 256) / 4))
    }

    // MARK: descriptors and stopping

    /// Takes the reserve descriptor back when it was used and a descriptor is free; true when it is held.
    func holdReserveDescriptor() -> Bool {
        if reserveDescriptor == nil {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if fd >= 0 { reserveDescriptor = OwnedDescriptor(adopting: fd) }
        }
        return reserveDescriptor != nil
    }

    /// Closes the reserve descriptor so that one accept can succeed; false when it is already in use.
    func releaseReserveDescriptor() -> Bool {
        guard let reserve = reserveDescriptor else { return false }
        reserve.close()
        reserveDescriptor = nil
        return true
    }

    /// Asks the loop to stop; safe from any thread.
    public func requestStop() { stopper.requestStop() }

    /// A thread-safe handle that stops a broker's loop.
    public final class Stopper: Sendable {
        private let flag = Atomic<Bool>(false)
        private let reload = Atomic<Bool>(false)
        private let wakeup: EventFd

        init(wakeup: EventFd) { self.wakeup = wakeup }

        public var isRequested: Bool { flag.load(ordering: .acquiring) }

        public func requestStop() {
            flag.store(true, ordering: .releasing)
            wakeup.signal()
        }

        /// Asks the loop to reload the TLS certificates (SIGHUP).
        public func requestTLSReload() {
            reload.store(true, ordering: .releasing)
            wakeup.signal()
        }

        /// Whether a reload was asked for since the last call.
        func takeTLSReloadRequest() -> Bool { reload.exchange(false, ordering: .acquiringAndReleasing) }
    }

    /// Removes this broker's socket files after a fatal error.
    public func removeSocketFilesOnFailure() { removeSocketFiles() }

    func removeSocketFiles() {
        for path in ownedSocketPaths { unlink(path) }
        ownedSocketPaths.removeAll()
    }
}
