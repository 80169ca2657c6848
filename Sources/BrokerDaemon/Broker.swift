// The broker as a library: owns the event loop, listeners, groups, clients and peer links.
// Everything runs on the loop's thread; only `requestStop` may be called from elsewhere.
#if canImport(Glibc)
import Glibc
#endif
import BrokerSystem
import BrokerWire
import Synchronization

public final class Broker {
    public let config: BrokerConfig
    let logger: Logger
    let loop: EventLoop
    /// Random per start: tells peers a restarted broker from a duplicate connection.
    let incarnation = UInt64.random(in: 1...UInt64.max)
    let startedAt = Posix.monotonicNanoseconds()
    /// The loop's clock, read once per turn.
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-ipc-builds, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) var now = Posix.monotonicNanoseconds()

    var links: [Int32: PeerLink] = [:]
    var linkList: [PeerLink] = []
    var groups: [String: Group] = [:]
    var groupList: [Group] = []
    /// Indexes of released groups, lowest last: the next group takes the lowest.
    var freeGroupIndexes: [UInt32] = []
    var nextGroupSweepAt: UInt64 = 0
    var groupsRefused = 0
    var groupsReleased = 0
    var clients: [UInt32: LocalClient] = [:]
    /// Clients with shared-memory rings: polled every turn while busy, woken through the loop's eventfd.
    var ringClients: [LocalClient] = []
    /// Where the rings phase starts this pass (one client further each pass).
    var ringCursor = 0
    /// Groups whose queues passed the backpressure mark (see `applyBackpressure`).
    var congestedGroups: [Group] = []
    var backpressureBytes: Int { min(config.peerQueueBytes / 2, 256 << 10) }
    /// Credit goes back to a peer's flow in batches of this many bytes (a sixteenth of the window granted: a
    /// CREDIT waits behind the other direction's data, and small batches keep the peer's window open).
    let creditBatch: Int
    var nextTickAt: UInt64 = 0
    /// When the timers last ran (0: never).
    var lastTickAt: UInt64 = 0
    /// When to hand freed memory back to the system after clients left (0: nothing to hand back).
    var trimMemoryAt: UInt64 = 0
    var nextClientID: UInt32 = 1
    var handshaking: [PeerConnection] = []
    /// --join targets, dialled until this broker has a link; the join connections in progress.
    var joinTargets: [PeerAddress] = []
    var joinDials: [PeerConnection] = []
    var nextJoinDialAt: UInt64 = 0
    /// Set when the broker must stop with a failure (a duplicate site id).
    var fatalReason: String?
    var listeners: [Listener] = []
    var ownedSocketPaths: [String] = []
    public private(set) var peerPort: UInt16?
    /// The address other sites dial to reach this one (never a wildcard); nil until known.
    var advertised: String?
    /// Resolves peer host names off the loop.
    let resolver = PeerResolver()

    var badFrames = 0
    var clientsRefused = 0
    var acceptFailures = 0
    /// A descriptor held back (on /dev/null) for the admin and peer listeners when the rest are used up.
    var reserveDescriptor: CInt = -1
    /// Most local clients at once: --max-clients, or by default a share of the descriptor limit.
    let maxClients: Int
    var unroutable = 0
    var misrouted = 0
    @exclusivity(unchecked) var routedMessages = 0
    var channelMessages = 0
    var channelRequests = 0
    var channelReplies = 0
    var channelNoSubscriber = 0
    var channelOrphanReplies = 0
    var channelTimeouts = 0
    var acksReceived = 0
    var permanentAcked = 0
    var permanentAckFailures = 0

    /// Stops the loop from any thread (signal handlers, tests).
    public let stopper: Stopper
    var heartbeatNanoseconds: UInt64 { UInt64(config.heartbeatMilliseconds) * 1_000_000 }
    var handshakeTimeoutNanoseconds: UInt64 { max(3 * heartbeatNanoseconds, 1_000_000_000) }
    var tickMilliseconds: Int32 { Int32(max(5, min(50, config.heartbeatMilliseconds / 4))) }

    /// Validates the config and creates the loop; `start` opens the sockets.
    public init(config: BrokerConfig, logger: Logger? = nil) throws {
        let addresses = try config.validate()
        self.config = config
        self.logger = logger ?? Logger(label: "repbrokerd", level: config.logLevel)
        loop = try EventLoop()
        stopper = Stopper(wakeup: loop.wakeup)
        maxClients = config.maxClients ?? Self.defaultMaxClients(descriptorLimit: Posix.descriptorLimit())
        creditBatch = config.flowWindowBytes / 16
        for peer in config.peers.sorted(by: { $0.siteID < $1.siteID }) {
            let link = PeerLink(siteID: peer.siteID, index: linkList.count, address: addresses[peer.siteID],
                                queueLimit: config.peerQueueBytes)
            links[peer.siteID] = link
            linkList.append(link)
        }
        joinTargets = config.join.compactMap { try? PeerAddress.parse($0, verified: true).get() }
        if let advertise = config.advertise {
            advertised = advertise
        } else if let listen = config.listen, SocketAddress(numeric: listen)?.isWildcard != true {
            advertised = listen
        }
        loadMembership()
    }

    /// Opens the peer listener and both Unix sockets; throws with a clear reason when one cannot be had.
    public func start() throws {
        if let listen = config.listen {
            let fd = try Socket.listenTCP(SocketAddress(listen))
            peerPort = Socket.localPort(fd)
            listeners.append(try Listener(descriptor: fd, kind: .peers, broker: self))
        }
        for (path, kind) in [(config.socketPath, Listener.Kind.clients), (config.adminSocketPath, .admin)] {
            try SocketPath.prepare(path)
            let fd = try Socket.listenUnix(path: path, mode: mode_t(config.socketMode))
            ownedSocketPaths.append(path)
            if let group = config.socketGroup, chown(path, uid_t.max, gid_t(group)) != 0 {
                throw SystemError("chown(\(path), group \(group))", .current)
            }
            listeners.append(try Listener(descriptor: fd, kind: kind, broker: self))
        }
        logger.info("broker started", [
            "max_clients": "\(maxClients)", "descriptor_limit": "\(Posix.descriptorLimit())",
            "site_id": "\(config.siteID)", "listen": config.listen ?? "-", "socket": config.socketPath,
            "advertise": advertised ?? (config.listen == nil ? "-" : "(the local address of the first peer connection)"),
            "admin_socket": config.adminSocketPath, "peers": "\(linkList.count)",
        ])
    }

    public struct BrokerFailure: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    /// Backpressure, per group, end to end and without drops (PROTOCOL.md, "Flow control"). A group is
    /// congested while one of its flows on a connected peer link, or its local receiver's queue, holds more
    /// than the mark; its local producers pause then, and only they: other groups keep flowing. A flow's queue
    /// grows when the peer withholds credit, which it does while that group's receiver there is behind, so a
    /// slow receiver stops its own group's senders at their sites. Clients holding a receiver role are never
    /// paused: what they send (acks, answers, sends from a receive callback) is often what lets a queue drain.
    /// A peer that is down pauses nobody: messages for it are queued, then dropped and counted when its queue
    /// is full. Groups get on the list as a queue passes the mark (`congest`); each pass checks the list.
    func applyBackpressure() {
        var position = 0
        while position < congestedGroups.count {
            let group = congestedGroups[position]
            if isOverMark(group) {
                if !group.producersPaused { setProducersPaused(group, true) }
                position += 1
            } else {
                group.congested = false
                if group.producersPaused { setProducersPaused(group, false) }
                congestedGroups.remove(at: position)
            }
        }
    }

    /// A queue of `group` passed the mark: its producers stop taking records at once (the rings phase checks
    /// the flag), and the next pass pauses their sockets.
    @inline(__always)
    func congest(_ group: Group) {
        guard !group.congested else { return }
        group.congested = true
        congestedGroups.append(group)
    }

    func isOverMark(_ group: Group) -> Bool {
        if let receiver = group.receiver, receiver.output.byteCount > backpressureBytes { return true }
        for link in linkList where link.connection != nil && link.queuedBytes(of: group) > backpressureBytes {
            return true
        }
        return false
    }

    /// Pauses or resumes the sockets of the group's producers without rings. A ring client's messages come in
    /// its ring, which the rings phase leaves alone while the group is congested; its socket, which carries only
    /// control frames (acks, master announcements, channel replies), is always read.
    private func setProducersPaused(_ group: Group, _ paused: Bool) {
        group.producersPaused = paused
        for client in clients.values where client.group === group && client.roleState != .receiver && client.rings == nil {
            client.setReadingPaused(paused)
        }
    }

    /// Sends the credit that is due on every link: the bytes of each peer flow handed on here, once that
    /// flow's group has room again (its receiver, or its channel's subscribers, at or under the mark).
    func returnCredits() {
        for link in linkList where !link.credit.due.isEmpty {
            guard link.connection != nil else { continue }
            var position = 0
            while position < link.credit.due.count {
                let id = link.credit.due[position]
                let trafficClass: TrafficClass = id & 1 == 0 ? .replication : .channel
                if let group = link.remoteGroups[UInt32(id >> 1)], deliveryBacklog(group, trafficClass) > backpressureBytes {
                    position += 1
                    continue
                }
                let owed = link.credit.take(dueAt: position)
                var left = owed.bytes
                while left > 0 {
                    let bytes = min(left, Int(UInt32.max))
                    CreditFrame(group: UInt32(id >> 1), trafficClass: trafficClass, bytes: UInt32(bytes), acked: owed.acked)
                        .append(to: link.control.buffer)
                    left -= bytes
                }
                link.connection?.scheduleFlush()
            }
        }
    }

    /// Bytes of `group`'s `trafficClass` waiting here for local clients: its receiver's queue (a group without
    /// a receiver keeps its own bounded queue, and does not hold credit back), or its subscribers' largest.
    func deliveryBacklog(_ group: Group, _ trafficClass: TrafficClass) -> Int {
        switch trafficClass {
        case .replication:
            return group.receiver?.output.byteCount ?? 0
        case .channel:
            var largest = 0
            for subscribers in group.channels.values {
                for client in subscribers.clients { largest = max(largest, client.socketQueue.byteCount) }
            }
            return largest
        }
    }

    /// Options of every peer socket: no Nagle delay, and a short kernel send queue (TCP_NOTSENT_LOWAT).
    static func configurePeerSocket(_ fd: CInt) {
        Socket.setNoDelay(fd)
        Socket.setNotSentLowWatermark(fd, bytes: CInt(peerNotSentLowWatermark))
    }

    /// Unsent bytes the kernel may hold per peer socket before the broker's queue holds the rest.
    static let peerNotSentLowWatermark = 128 << 10

    /// Asks the loop to stop; safe from any thread.
    public func requestStop() { stopper.requestStop() }

    /// A thread-safe handle that stops a broker's loop.
    public final class Stopper: Sendable {
        private let flag = Atomic<Bool>(false)
        private let wakeup: EventFd

        init(wakeup: EventFd) { self.wakeup = wakeup }

        public var isRequested: Bool { flag.load(ordering: .acquiring) }

        public func requestStop() {
            flag.store(true, ordering: .releasing)
            wakeup.signal()
        }
    }

    func shutDown() throws {
        logger.info("stopping: no new connections, flushing peers for up to \(config.shutdownFlushMilliseconds) ms")
        for listener in listeners { listener.close() }
        listeners.removeAll()
        removeSocketFiles()
        let deadline = Posix.monotonicNanoseconds() + UInt64(config.shutdownFlushMilliseconds) * 1_000_000
        while linkList.contains(where: { $0.connection != nil && $0.queuedBytes > 0 }),
              Posix.monotonicNanoseconds() < deadline {
            try loop.turn(timeoutMilliseconds: 10)
            now = Posix.monotonicNanoseconds()
        }
        let queued = linkList.reduce(0) { $0 + $1.queuedBytes }
        if queued > 0 {
            // Frames sent and not yet acknowledged are kept too: the peer may not have them.
            let unacked = linkList.reduce(0) { total, link in total + link.flows.reduce(0) { $0 + ($1?.unackedBytes ?? 0) } }
            logger.warning("stopped with frames for peers not acknowledged", [
                "queued_bytes": "\(queued)", "of_which_sent_bytes": "\(unacked)"])
        }
        for client in Array(clients.values) { client.close(reason: "broker stopping") }
        for connection in handshaking { connection.close(reason: "broker stopping") }
        for link in linkList {
            link.connection?.close(reason: "broker stopping")
            link.dialing?.close(reason: "broker stopping")
        }
        resolver.stop()
        _ = releaseReserveDescriptor()
        logger.info("stopped")
    }

    /// Removes this broker's socket files after a fatal error.
    public func removeSocketFilesOnFailure() { removeSocketFiles() }

    func removeSocketFiles() {
        for path in ownedSocketPaths { unlink(path) }
        ownedSocketPaths.removeAll()
    }

    /// The parent at start, for --exit-with-parent.
    let parentPID = getppid()

    /// Timers: peer heartbeats and liveness, dialling, handshake deadlines.
    func tick() {
        if config.exitWithParent && getppid() != parentPID {
            logger.warning("the process that started this broker exited: stopping")
            requestStop()
        }
        takeResolverAnswers()
        _ = holdReserveDescriptor()
        for listener in listeners { listener.resumeIfDue(now: now) }
        releaseIdleGroups()
        dialJoinTargets()
        let elapsed = lastTickAt == 0 ? 0 : now &- lastTickAt
        lastTickAt = now
        for link in linkList where !link.removed {
            if let connection = link.connection {
                // What is owed short of a batch goes back too, so the peer lets its acknowledged frames go.
                link.credit.dueAll()
                let heard = link.heardSinceTick
                if heard {
                    link.heardSinceTick = false
                    link.lastHeard = now
                }
                if !link.liveness.tick(heard: heard, elapsed: elapsed, interval: heartbeatNanoseconds) {
                    connection.close(reason: "no traffic for \(link.liveness.silentNanoseconds / 1_000_000) ms of this "
                        + "broker's running time (three heartbeats)")
                } else if now &- link.lastSent >= heartbeatNanoseconds && link.wire.isEmpty && link.control.isEmpty {
                    // Also while every flow waits for credit: the link is alive even when no data may move.
                    link.enqueueControl(FrameParser.encode(.heartbeat, body: []))
                    link.lastSent = now
                }
                // A site that dialled in told us its address: one dial of our own proves it (the HELLO on it
                // says who answers) before it is stored; the arbiter then drops that spare connection.
                if link.address?.verified == false, link.dialing == nil, now >= link.nextDialAt {
                    dialOrResolve(link)
                }
            } else if link.dialing == nil, link.address != nil, now >= link.nextDialAt {
                dialOrResolve(link)
            }
        }
        expirePendingAcks()
        if trimMemoryAt != 0 && now >= trimMemoryAt {
            trimMemoryAt = 0
            // Clients' buffers (hundreds of KiB each) go back to the system once they have left; glibc keeps
            // freed heap memory otherwise, and a broker that saw a burst of clients would keep its peak.
            Posix.releaseFreedMemory()
        }
        if !handshaking.isEmpty {
            for connection in handshaking where now > connection.deadline {
                connection.close(reason: "handshake with \(connection.peerDescription) timed out")
            }
        }
        loop.flushDirty()
    }

    /// Takes the reserve descriptor back when it was used and a descriptor is free; true when it is held.
    func holdReserveDescriptor() -> Bool {
        if reserveDescriptor < 0 { reserveDescriptor = open("/dev/null", O_RDONLY | O_CLOEXEC) }
        return reserveDescriptor >= 0
    }

    /// Closes the reserve descriptor so that one accept can succeed; false when it is already in use.
    func releaseReserveDescriptor() -> Bool {
        guard reserveDescriptor >= 0 else { return false }
        Posix.close(descriptor: reserveDescriptor)
        reserveDescriptor = -1
        return true
    }

    /// Descriptors per local client at most (its socket, and with rings its doorbells), and those kept for the
    /// listeners, peer links and admin connections: the default --max-clients leaves them free.
    static func defaultMaxClients(descriptorLimit: Int) -> Int {
        max(8, min(4096, (descriptorLimit - 256) / 4))
    }

    /// Whether the process at the other end of a local socket may use it (SO_PEERCRED against the allow lists).
    func mayConnect(_ fd: CInt) -> Bool {
        guard !config.allowUIDs.isEmpty || !config.allowGIDs.isEmpty else { return true }
        guard let credentials = Socket.peerCredentials(fd) else { return false }
        return credentials.uid == getuid() || config.allowUIDs.contains(UInt32(credentials.uid))
            || config.allowGIDs.contains(UInt32(credentials.gid))
    }

    func accepted(_ fd: CInt, on kind: Listener.Kind) {
        if kind != .peers && !mayConnect(fd) {
            let credentials = Socket.peerCredentials(fd)
            clientsRefused += 1
            logger.warning("local connection refused: not in the allow list", [
                "client.pid": "\(credentials?.pid ?? 0)", "client.uid": "\(credentials?.uid ?? 0)",
                "client.gid": "\(credentials?.gid ?? 0)",
            ])
            Connection.writeError(.notAllowed, "uid \(credentials?.uid ?? 0) is not allowed to use this broker", to: fd)
            Posix.close(descriptor: fd)
            return
        }
        if kind == .clients && clients.count >= maxClients {
            clientsRefused += 1
            if clientsRefused == 1 || clientsRefused % 1000 == 0 {
                logger.warning("local client refused: --max-clients reached", [
                    "max_clients": "\(maxClients)", "clients_refused": "\(clientsRefused)"])
            }
            Connection.writeError(.clientLimit, "this broker serves \(maxClients) clients already (--max-clients)", to: fd)
            Posix.close(descriptor: fd)
            return
        }
        do {
            switch kind {
            case .peers:
                Self.configurePeerSocket(fd)
                learnAdvertisedAddress(from: fd, connectionTo: "an incoming peer connection")
                let connection = PeerConnection(descriptor: fd, broker: self, outgoing: nil)
                try connection.register()
                handshaking.append(connection)
                connection.sendHello()
            case .clients:
                let client = LocalClient(descriptor: fd, broker: self, id: nextClientID)
                nextClientID &+= 1
                try client.register()
                clients[client.id] = client
                logger.debug("client connected", ["client.id": "\(client.id)", "client.pid": "\(client.pid)"])
            case .admin:
                let admin = AdminConnection(descriptor: fd, broker: self)
                try admin.register()
            }
        } catch {
            logger.warning("cannot serve an accepted connection: \(error)")
            Posix.close(descriptor: fd)
        }
    }

    func countBadFrame(clientID: UInt32, _ error: WireError) {
        badFrames += 1
        logger.warning("bad frame from a client, closing it", ["client.id": "\(clientID)", "reason": "\(error)"])
    }

    func countBadFrame(peer: String, _ error: WireError) {
        badFrames += 1
        logger.warning("bad frame from a peer connection, closing it", ["peer": peer, "reason": "\(error)"])
    }
}
