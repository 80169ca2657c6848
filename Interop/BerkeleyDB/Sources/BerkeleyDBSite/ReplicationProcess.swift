// The site's one replication process: holds the receiver role and feeds every message into
// rep_process_message with the source site as envid; acknowledges ISPERM LSNs; holds elections on a
// thread of their own when the master's site goes down or Berkeley DB asks; becomes master when elected;
// re-runs rep_start when a site comes back; heartbeats (rep_flush) as master; runs failchk on a thread of
// its own.
//
// Prints status lines: `role=master`, `role=client`, `master=N`, `startupdone`, `newsite from=N`,
// `elect ...`, `site_up N`, `site_down N`.
import CBerkeleyDB
import Foundation
import RepBrokerClient

public struct ReplicateOptions: Sendable {
    public var home: String
    public var socketPath: String
    public var siteID: Int32
    public var sites: Int
    public var priority: UInt32 = 100
    public var startAsMaster = false
    public var group = "default"
    public var ackPolicy: AckPolicy = .quorum
    /// DB_REP_CONF_BULK: the master batches log records into bulk messages (sent when a PERMANENT record is
    /// written or the buffer fills), as repmgr's benchmark rows do.
    public var bulk = false
    public init(home: String, socketPath: String, siteID: Int32, sites: Int) {
        self.home = home
        self.socketPath = socketPath
        self.siteID = siteID
        self.sites = sites
    }
}

public final class ReplicationProcess: @unchecked Sendable {
    let options: ReplicateOptions
    let client: BrokerClient
    let transport: SiteTransport
    var environment: Environment?
    let lock = NSLock()

    // Guarded by `lock`.
    var isMaster = false
    var masterID: Int32 = 0
    /// Peer sites whose broker link is up: the broker sends the state of every link when this process gets
    /// the receiver role, then every change.
    var upSites: Set<Int32> = []
    var electing = false
    var becomeMaster = false
    var restartAsClient = false
    var lastElection = Date.distantPast
    var lastFlush = Date()
    /// When a message from the master this process knows last arrived (the master flushes every second).
    var lastFromMaster = Date()

    public init(options: ReplicateOptions) throws {
        self.options = options
        var clientOptions = BrokerClientOptions(socketPath: options.socketPath, group: options.group,
                                                name: "bdb-replicate", roles: [.sender, .receiver])
        clientOptions.ackPolicy = options.ackPolicy
        client = try BrokerClient(options: clientOptions)
        guard client.siteID == options.siteID else {
            throw BDBError(call: "broker at \(options.socketPath) serves site \(client.siteID), not \(options.siteID)",
                           code: EINVAL)
        }
        transport = SiteTransport(client: client, siteID: options.siteID)
    }

    var env: UnsafeMutablePointer<DB_ENV> { environment.unsafelyUnwrapped.handle }

    var isMasterNow: Bool { lock.withLock { isMaster } }

    var cdata: [UInt8] { Array("site=\(options.siteID)".utf8) }

    public func run() throws -> Never {
        if let moved = try Reinitialization.performIfRequested(home: options.home) {
            say("reinitialized: the old environment is in \(moved)")
        }
        transport.onEvent = { [unowned self] event, info in handle(event: event, info: info) }
        let flags = UInt32(DB_CREATE | DB_RECOVER | DB_THREAD | DB_INIT_REP | DB_INIT_TXN | DB_INIT_LOG
            | DB_INIT_LOCK | DB_INIT_MPOOL)
        environment = try Environment(home: options.home, flags: flags) { [self] env in
            try configureCommon(env)
            try check(env.pointee.set_event_notify(env, repbrokerEvent), "DB_ENV->set_event_notify")
            try check(env.pointee.rep_set_priority(env, options.priority), "DB_ENV->rep_set_priority")
            try check(env.pointee.rep_set_nsites(env, UInt32(options.sites)), "DB_ENV->rep_set_nsites")
            // A checkpoint would block this message loop for DB_REP_CHECKPOINT_DELAY (30 s by default).
            try check(env.pointee.rep_set_timeout(env, DB_REP_CHECKPOINT_DELAY, 0), "rep_set_timeout(checkpoint)")
            try check(env.pointee.rep_set_timeout(env, DB_REP_ELECTION_TIMEOUT, 2_000_000), "rep_set_timeout(election)")
            if options.bulk { try check(env.pointee.rep_set_config(env, UInt32(DB_REP_CONF_BULK), 1), "rep_set_config(BULK)") }
            try transport.install(on: env)
        }
        try start(asMaster: options.startAsMaster)
        startFailureWatch()
        say("ready site=\(options.siteID)")
        while true {
            if let event = try? client.nextEvent(timeout: 0.1) { handle(event) }
            periodic()
        }
    }

    func start(asMaster: Bool) throws {
        var data = cdata
        let rc: Int32 = withDBT(&data) { dbt in
            env.pointee.rep_start(env, &dbt, UInt32(asMaster ? DB_REP_MASTER : DB_REP_CLIENT))
        }
        try check(rc, "DB_ENV->rep_start(\(asMaster ? "MASTER" : "CLIENT"))")
        lock.withLock { isMaster = asMaster }
        if asMaster { announceMaster(options.siteID) }
    }

    func announceMaster(_ site: Int32) {
        lock.withLock {
            masterID = site
            lastFromMaster = Date()
        }
        try? client.announceMaster(siteID: site)
    }

    // MARK: messages and site events

    func handle(_ event: ClientEvent) {
        switch event {
        case .message(let message):
            process(message)
        case .siteDown(let site):
            say("site_down \(site)")
            let lostMaster = lock.withLock { () -> Bool in
                upSites.remove(site)
                guard site == masterID else { return false }
                masterID = 0
                return true
            }
            if lostMaster { holdElection(reason: "master site \(site) is down") }
        case .siteUp(let site):
            say("site_up \(site)")
            let (master, known) = lock.withLock {
                upSites.insert(site)
                return (isMaster, masterID)
            }
            // A returning site learns the master (rep_start(MASTER) re-announces it); a client whose master
            // came back asks for what it missed.
            if master {
                try? start(asMaster: true)
            } else if known == 0 || known == site {
                try? start(asMaster: false)
            }
        }
    }

    func process(_ message: ReceivedMessage) {
        lock.withLock { if message.source == masterID { lastFromMaster = Date() } }
        var control = message.control
        var rec = message.rec
        var returned = DB_LSN()
        let recoveryFailuresBefore = recoveryFunctionFailures.load(ordering: .relaxed)
        let rc: Int32 = withDBT(&control) { controlDBT in
            withDBT(&rec) { recDBT in
                env.pointee.rep_process_message(env, &controlDBT, &recDBT, message.source, &returned)
            }
        }
        switch rc {
        case 0, DB_REP_NOTPERM, DB_REP_IGNORE:
            break
        case DB_REP_ISPERM:
            try? client.acknowledge(lsn: LSN(file: returned.file, offset: returned.offset), to: message.source)
        case DB_REP_NEWSITE:
            say("newsite from=\(message.source) cdata=\(String(decoding: message.rec, as: UTF8.self))")
        case DB_REP_HOLDELECTION:
            holdElection(reason: "Berkeley DB asked for an election", joining: true)
        case DB_REP_DUPMASTER:
            say("dupmaster")
            lock.withLock { restartAsClient = true }
        case DB_REP_JOIN_FAILURE:
            Reinitialization.request(home: options.home,
                                     reason: "join failure: this site cannot sync with the master without an internal init")
        case DB_RUNRECOVERY:
            complain("bdb-site: rep_process_message: the environment needs recovery")
            exit(2)
        default:
            let reason = "rep_process_message from site \(message.source): " + String(cString: db_strerror(rc))
            complain("bdb-site: \(reason)")
            // The recovery that rolls a client's log back to the master's failed (seen when a file id was reused
            // after the recovery that followed a writer's kill -9). It fails again with every message and after a
            // restart with recovery: a copy of the master is the way on.
            if recoveryFunctionFailures.load(ordering: .relaxed) != recoveryFailuresBefore && !isMasterNow {
                Reinitialization.request(home: options.home, reason: reason + " (a recovery function failed)")
            }
        }
    }

    // MARK: Berkeley DB events (any thread inside the library)

    func handle(event: UInt32, info: UnsafeMutableRawPointer?) {
        switch Int32(event) {
        case DB_EVENT_REP_ELECTED:
            lock.withLock { becomeMaster = true }
        case DB_EVENT_REP_MASTER:
            say("role=master")
            announceMaster(options.siteID)
        case DB_EVENT_REP_NEWMASTER:
            let site = info?.load(as: Int32.self) ?? 0
            say("master=\(site)")
            if site != options.siteID {
                lock.withLock { isMaster = false }
                announceMaster(site)
            }
        case DB_EVENT_REP_CLIENT:
            lock.withLock { isMaster = false }
            say("role=client")
        case DB_EVENT_REP_STARTUPDONE:
            say("startupdone")
        case DB_EVENT_REP_DUPMASTER:
            lock.withLock { restartAsClient = true }
        case DB_EVENT_PANIC:
            complain("bdb-site: Berkeley DB panic: the environment needs recovery")
            exit(2)
        default:
            break
        }
    }

    // MARK: elections and timers

    /// rep_elect on its own thread: the message loop must keep running while the election waits for votes.
    ///
    /// nvotes is always a majority of the whole group, so at most one side of a partition elects a master,
    /// and every election hears from at least one site that holds each transaction acknowledged by a quorum.
    /// nsites, the number of sites whose election information ends phase one early, is the sites the broker
    /// reports up (this one included), never fewer than nvotes: Berkeley DB then does not wait its election
    /// timeout for a site whose link is down (the Base API guide's advice of nsites = group - 1 when the
    /// master failed). A site wrongly reported down can only end phase one sooner: the sites heard are still
    /// a majority, so the winner, the most advanced of them, still holds every acknowledged transaction.
    ///
    /// `joining`: another site's vote started this election (DB_REP_HOLDELECTION). That site already lost the
    /// master, and this one may not know yet (its broker declares a frozen or cut-off site down up to a tick
    /// later): counting the old master here would hold phase one for the whole election timeout. A joining
    /// site therefore ends phase one at nvotes, a majority, with the same guarantee.
    func holdElection(reason: String, joining: Bool = false) {
        let sites = UInt32(options.sites)
        let votes = sites / 2 + 1
        let (start, participants) = lock.withLock { () -> (Bool, UInt32) in
            let reachable = min(sites, UInt32(1 + upSites.count))
            guard !electing, !isMaster else { return (false, 0) }
            electing = true
            lastElection = Date()
            return (true, joining ? votes : max(votes, reachable))
        }
        guard start else { return }
        say("elect reason=\"\(reason)\" nsites=\(participants) nvotes=\(votes)")
        Thread.detachNewThread { [self] in
            let began = Date()
            let rc = env.pointee.rep_elect(env, participants, votes, 0)
            let took = Int(Date().timeIntervalSince(began) * 1000)
            say("elect done rc=\(rc) ms=\(took)\(rc == 0 ? "" : " (" + String(cString: db_strerror(rc)) + ")")")
            lock.withLock {
                electing = false
                lastElection = Date()
            }
        }
    }

    /// failchk every second on a thread of its own. It frees the locks of writer processes that died holding
    /// them. A process that died inside the library leaves the environment needing recovery, and may leave
    /// rep_start (a role change) waiting for ever for its operation to end: so the watch is not on the message
    /// loop, and it ends this process (exit 2), whose restart, with DB_RECOVER once the site's other processes
    /// are gone, recovers the environment.
    func startFailureWatch() {
        Thread.detachNewThread { [self] in
            while true {
                sleep(1)
                if env.pointee.failchk(env, 0) == DB_RUNRECOVERY {
                    complain("bdb-site: failchk: a process died inside Berkeley DB; the environment needs recovery")
                    _exit(2)
                }
            }
        }
    }

    func periodic() {
        let (toMaster, toClient, master, known, electionDue, flushDue, masterSilent) = lock.withLock {
            () -> (Bool, Bool, Bool, Int32, Bool, Bool, Bool) in
            let now = Date()
            defer {
                becomeMaster = false
                restartAsClient = false
            }
            return (becomeMaster, restartAsClient, isMaster, masterID,
                    !electing && now.timeIntervalSince(lastElection) > 3,
                    now.timeIntervalSince(lastFlush) >= 1, now.timeIntervalSince(lastFromMaster) > 3)
        }
        if toMaster {
            do { try start(asMaster: true) } catch { complain("bdb-site: \(error)") }
        }
        if toClient {
            try? start(asMaster: false)
            holdElection(reason: "two masters")
        }
        if master && flushDue {
            // The master's heartbeat: clients re-request gaps only when later messages arrive.
            _ = env.pointee.rep_flush(env)
            lock.withLock { lastFlush = Date() }
        }
        if !master && known == 0 && electionDue {
            holdElection(reason: "no master known")
        } else if !master && known != 0 && masterSilent && electionDue {
            // The master heartbeats (rep_flush) every second. Silence for three means it is not master any more
            // (it stepped down after DUPMASTER, say) though its site is up: nobody else would start an election.
            holdElection(reason: "no word from master site \(known) for 3 s")
        }
    }
}
