// The same site processes on Berkeley DB's own Replication Manager, for the benchmark: the replication
// process configures the local site (site 1 creates the group; the others join through it as helper),
// sets the quorum ack policy, an explicit ack timeout and bulk transfer (DB_REP_CONF_BULK), and starts repmgr.
// Writers are either threads of that one process sharing its handles (repmgr's idiomatic configuration,
// `benchThreads`), or subordinate processes (repmgr_start in a process that is not the first one does not
// listen, it only connects out), the only way repmgr serves several writer processes.
import CBerkeleyDB
import Foundation

public struct RepmgrOptions: Sendable {
    public var home: String
    public var port: UInt16
    public var helperPort: UInt16?
    public var createsGroup = false
    public var priority: UInt32 = 100
    public var sites = 3
    public var bulk = true
    /// DB_REP_ACK_TIMEOUT; the broker's clients wait as long.
    public var ackTimeoutMicroseconds: UInt32 = 1_000_000
    /// Writer threads in this process for the benchmark (0: none); each commits `benchCount` transactions.
    public var benchThreads = 0
    public var benchCount = 0
    public var valueSize = 100
    public init(home: String, port: UInt16) {
        self.home = home
        self.port = port
    }
}

/// Tells the process its Berkeley DB events (repmgr runs its own threads).
final class RepmgrEvents: @unchecked Sendable {
    static let shared = RepmgrEvents()
    let lock = NSLock()
    var permanentFailures = 0
}

let repmgrEvent: @convention(c) (UnsafeMutablePointer<DB_ENV>?, UInt32, UnsafeMutableRawPointer?) -> Void = { _, event, _ in
    switch Int32(event) {
    case DB_EVENT_REP_MASTER: say("role=master")
    case DB_EVENT_REP_CLIENT: say("role=client")
    case DB_EVENT_REP_STARTUPDONE: say("startupdone")
    case DB_EVENT_REP_PERM_FAILED:
        RepmgrEvents.shared.lock.withLock { RepmgrEvents.shared.permanentFailures += 1 }
    case DB_EVENT_PANIC:
        complain("bdb-site: Berkeley DB panic")
        exit(2)
    default: break
    }
}

func configureRepmgr(_ env: UnsafeMutablePointer<DB_ENV>, _ options: RepmgrOptions, local: Bool) throws {
    try check(env.pointee.set_event_notify(env, repmgrEvent), "DB_ENV->set_event_notify")
    var site: UnsafeMutablePointer<DB_SITE>?
    try check(env.pointee.repmgr_site(env, "127.0.0.1", UInt32(options.port), &site, 0), "DB_ENV->repmgr_site(local)")
    if let site {
        try check(site.pointee.set_config(site, UInt32(DB_LOCAL_SITE), 1), "DB_SITE->set_config(LOCAL)")
        if options.createsGroup && local {
            try check(site.pointee.set_config(site, UInt32(DB_GROUP_CREATOR), 1), "DB_SITE->set_config(GROUP_CREATOR)")
        }
        _ = site.pointee.close(site)
    }
    if let helper = options.helperPort, local {
        var remote: UnsafeMutablePointer<DB_SITE>?
        try check(env.pointee.repmgr_site(env, "127.0.0.1", UInt32(helper), &remote, 0), "DB_ENV->repmgr_site(helper)")
        if let remote {
            try check(remote.pointee.set_config(remote, UInt32(DB_BOOTSTRAP_HELPER), 1), "DB_SITE->set_config(HELPER)")
            _ = remote.pointee.close(remote)
        }
    }
    try check(env.pointee.repmgr_set_ack_policy(env, DB_REPMGR_ACKS_QUORUM), "DB_ENV->repmgr_set_ack_policy")
    try check(env.pointee.rep_set_timeout(env, DB_REP_ACK_TIMEOUT, options.ackTimeoutMicroseconds),
              "rep_set_timeout(DB_REP_ACK_TIMEOUT)")
    if options.bulk { try check(env.pointee.rep_set_config(env, UInt32(DB_REP_CONF_BULK), 1), "rep_set_config(BULK)") }
}

/// The replication process on repmgr: runs until killed.
public func runRepmgrReplication(_ options: RepmgrOptions) throws -> Never {
    let flags = UInt32(DB_CREATE | DB_RECOVER | DB_THREAD | DB_INIT_REP | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK
        | DB_INIT_MPOOL)
    let environment = try Environment(home: options.home, flags: flags) { env in
        try configureCommon(env)
        try check(env.pointee.rep_set_priority(env, options.priority), "DB_ENV->rep_set_priority")
        try check(env.pointee.rep_set_timeout(env, DB_REP_CHECKPOINT_DELAY, 0), "rep_set_timeout(checkpoint)")
        try configureRepmgr(env, options, local: true)
    }
    let env = environment.handle
    // Joining through the helper is a membership change the master makes one at a time: retry while busy.
    var attempts = 0
    while true {
        let rc = env.pointee.repmgr_start(env, 3, UInt32(options.createsGroup ? DB_REP_MASTER : DB_REP_CLIENT))
        if rc == 0 { break }
        attempts += 1
        guard rc == DB_REP_UNAVAIL, attempts < 60 else { try check(rc, "DB_ENV->repmgr_start") ; break }
        usleep(250_000)
    }
    say("ready port=\(options.port)")
    if options.benchThreads > 0 { try runWriterThreads(environment, options) }
    while true {
        sleep(1)
        _ = env.pointee.failchk(env, 0)
    }
}

/// The benchmark's writer threads in the replication process: on `warm` (stdin) each commits one warm-up
/// transaction, then `warm` is printed; on `go` each commits `benchCount` transactions; the summary (the same
/// JSON as a writer process's) is printed last. Perm failures are process-wide events, counted in the window.
func runWriterThreads(_ environment: Environment, _ options: RepmgrOptions) throws {
    while let line = readLine(), line != "warm" {}
    let database = try openForWriting(environment)
    let count = options.benchThreads
    let warmed = DispatchSemaphore(value: 0)
    let go = DispatchSemaphore(value: 0)
    let done = DispatchGroup()
    let results = WriterThreadResults()
    for thread in 0..<count {
        done.enter()
        Thread.detachNewThread {
            defer { done.leave() }
            var latencies: [Int] = []
            var retries = 0
            do {
                retries += try database.putRetrying(key: Array("t\(thread)-warmup".utf8), value: benchValue("warmup", options.valueSize))
                warmed.signal()
                go.wait()
                latencies.reserveCapacity(options.benchCount)
                for index in 0..<options.benchCount {
                    let key = "t\(thread)-\(String(format: "%06d", index))"
                    let begin = DispatchTime.now().uptimeNanoseconds
                    retries += try database.putRetrying(key: Array(key.utf8), value: benchValue(key, options.valueSize))
                    latencies.append(Int((DispatchTime.now().uptimeNanoseconds - begin) / 1000))
                }
            } catch {
                complain("bdb-site: writer thread \(thread): \(error)")
                warmed.signal()
            }
            results.add(latencies, retries: retries)
        }
    }
    for _ in 0..<count { warmed.wait() }
    let startup = RepmgrEvents.shared.lock.withLock { RepmgrEvents.shared.permanentFailures }
    say("warm")
    while let line = readLine(), line != "go" {}
    let started = Date()
    for _ in 0..<count { go.signal() }
    done.wait()
    let failures = RepmgrEvents.shared.lock.withLock { RepmgrEvents.shared.permanentFailures } - startup
    var summary = results.summary
    summary.permFailures = failures
    summary.acked = summary.committed - failures
    summary.startupPermFailures = startup
    summary.elapsedMilliseconds = Int(Date().timeIntervalSince(started) * 1000)
    say(try summary.jsonLine())
}

final class WriterThreadResults: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var summary = WriteSummary(committed: 0, acked: 0, permFailures: 0)

    func add(_ latencies: [Int], retries: Int) {
        lock.withLock {
            summary.committed += latencies.count
            summary.deadlockRetries += retries
            summary.latenciesMicroseconds += latencies
        }
    }
}

/// Joins the environment as a subordinate repmgr process (for writers).
func joinRepmgrEnvironment(_ home: String, port: UInt16) throws -> Environment {
    let flags = UInt32(DB_THREAD | DB_INIT_REP | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK | DB_INIT_MPOOL)
    let environment = try Environment(home: home, flags: flags) { env in
        try configureCommon(env)
        try configureRepmgr(env, RepmgrOptions(home: home, port: port), local: false)
    }
    let env = environment.handle
    // A subordinate process gets DB_REP_IGNORE: the replication process already listens.
    let rc = env.pointee.repmgr_start(env, 1, UInt32(DB_REP_MASTER))
    if rc != DB_REP_IGNORE { try check(rc, "DB_ENV->repmgr_start(subordinate)") }
    return environment
}
