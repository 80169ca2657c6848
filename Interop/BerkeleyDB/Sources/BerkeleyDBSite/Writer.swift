// A writer process: joins the site's environment (no recovery, no rep_start), sets its own transport,
// and when its site is master commits one put per transaction. Berkeley DB calls its send function for
// the log records it writes: many processes, one broker, one link per peer site.
//
// Prints `acked KEY` for each transaction whose commit record met the ack policy, `unacked KEY` when it did
// not, and a JSON summary last: {"committed":N,"acked":N,"perm_failures":N,...}. For the benchmark, a writer
// commits one warm-up transaction first (`warmUp`: its start-up is then over, and perm failures so far are
// reported apart), says `warm`, and starts its timed loop when a line `go` arrives on stdin (`waitForGo`).
import CBerkeleyDB
import Foundation
import RepBrokerClient

public struct WriteOptions: Sendable {
    public var home: String
    public var socketPath: String
    public var count: Int
    public var prefix: String
    public var valueSize: Int = 100
    public var group = "default"
    public var ackPolicy: AckPolicy = .quorum
    public var ackTimeout: Double = 1
    /// Set to write through Berkeley DB's Replication Manager (as a subordinate process) instead of the broker.
    public var repmgrPort: UInt16?
    /// Set to commit to an environment without replication (made by `bdb-site local-env`): no transport.
    public var local = false
    public var warmUp = false
    public var waitForGo = false
    public init(home: String, socketPath: String, count: Int, prefix: String) {
        self.home = home
        self.socketPath = socketPath
        self.count = count
        self.prefix = prefix
    }
}

public struct WriteSummary: Codable, Sendable {
    public var committed: Int
    public var acked: Int
    /// PERMANENT sends that failed in the timed loop.
    public var permFailures: Int
    /// PERMANENT sends that failed before it (joining the environment, opening the database, the warm-up).
    public var startupPermFailures = 0
    public var deadlockRetries = 0
    /// CPU time of this process during the timed loop (user + system).
    public var cpuMilliseconds = 0
    /// Voluntary context switches of this process (every thread) during the timed loop.
    public var voluntarySwitches = 0
    public var elapsedMilliseconds = 0
    /// Every transaction's begin-to-commit time in microseconds, in order.
    public var latenciesMicroseconds: [Int] = []
    enum CodingKeys: String, CodingKey {
        case committed, acked, permFailures = "perm_failures", elapsedMilliseconds = "elapsed_ms"
        case startupPermFailures = "startup_perm_failures", deadlockRetries = "deadlock_retries"
        case cpuMilliseconds = "cpu_ms", voluntarySwitches = "voluntary_switches"
        case latenciesMicroseconds = "latencies_us"
    }

    /// The summary as the writer's last line: one line of JSON, keys sorted.
    public func jsonLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

public enum WriteError: Error, CustomStringConvertible {
    case notMaster
    case environmentMissing(String)
    public var description: String {
        switch self {
        case .notMaster: return "this site is not the master: writes are refused (EACCES); write at the master's site"
        case .environmentMissing(let home): return "no environment at \(home): start the site's replication process (repbroker-site) there first"
        }
    }
}

public func runWriter(_ options: WriteOptions) throws -> WriteSummary {
    if options.local {
        let environment = try joinEnvironment(options.home, transport: nil)
        defer { environment.close() }
        return try commit(options, environment, replicated: false) { 0 }
    }
    if let port = options.repmgrPort {
        let environment = try joinRepmgrEnvironment(options.home, port: port)
        defer { environment.close() }
        return try commit(options, environment) { RepmgrEvents.shared.lock.withLock { RepmgrEvents.shared.permanentFailures } }
    }
    var clientOptions = BrokerClientOptions(socketPath: options.socketPath, group: options.group,
                                            name: "bdb-write", roles: [.sender])
    clientOptions.ackPolicy = options.ackPolicy
    clientOptions.ackTimeout = options.ackTimeout
    let client = try BrokerClient(options: clientOptions)
    defer { client.close() }
    let transport = SiteTransport(client: client, siteID: client.siteID)
    let environment = try joinEnvironment(options.home, transport: transport)
    defer { environment.close() }
    return try commit(options, environment) { transport.permanentFailures }
}

/// Commits `options.count` transactions of one put each; `failures` counts PERMANENT sends that failed.
func commit(_ options: WriteOptions, _ environment: Environment, replicated: Bool = true,
            failures: () -> Int) throws -> WriteSummary {
    if replicated { guard try environment.replicationRole() == UInt32(DB_REP_MASTER) else { throw WriteError.notMaster } }
    let database = try openForWriting(environment)
    defer { database.close() }
    var summary = WriteSummary(committed: 0, acked: 0, permFailures: 0)
    if options.warmUp {
        summary.deadlockRetries += try database.putRetrying(key: Array("\(options.prefix)-warmup".utf8),
                                                            value: benchValue("warmup", options.valueSize))
    }
    summary.startupPermFailures = failures()
    if options.waitForGo {
        say("warm")
        while let line = readLine(), line != "go" {}
    }
    let started = Date()
    let cpuBefore = processCPUMilliseconds()
    let switchesBefore = processVoluntarySwitches()

    for index in 0..<options.count {
        let key = "\(options.prefix)-\(String(format: "%06d", index))"
        let value = benchValue(key, options.valueSize)
        let failuresBefore = failures()
        let begin = DispatchTime.now().uptimeNanoseconds
        do {
            summary.deadlockRetries += try database.putRetrying(key: Array(key.utf8), value: value)
            summary.latenciesMicroseconds.append(Int((DispatchTime.now().uptimeNanoseconds - begin) / 1000))
        } catch {
            guard error.code == EACCES else { throw error }
            if summary.committed == 0 { throw WriteError.notMaster }
            complain("bdb-site write: the site stopped being master after \(summary.committed) transactions")
            break
        }
        summary.committed += 1
        if failures() == failuresBefore {
            summary.acked += 1
            say("acked \(key)")
        } else {
            say("unacked \(key)")
        }
    }
    summary.permFailures = failures() - summary.startupPermFailures
    summary.elapsedMilliseconds = Int(Date().timeIntervalSince(started) * 1000)
    summary.cpuMilliseconds = processCPUMilliseconds() - cpuBefore
    summary.voluntarySwitches = processVoluntarySwitches() - switchesBefore
    return summary
}

/// A value of `size` bytes that names its key.
func benchValue(_ key: String, _ size: Int) -> [UInt8] {
    var value = Array("v-\(key)-".utf8)
    while value.count < size { value.append(UInt8(ascii: "a") + UInt8(value.count % 26)) }
    return value
}

/// User plus system CPU time of this process so far, in milliseconds.
func processCPUMilliseconds() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000 + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000
}

/// Makes (or recovers) an environment without replication, for writers with `local` set, and closes it: its
/// regions stay in `home` for them.
public func makeLocalEnvironment(home: String) throws {
    let flags = UInt32(DB_CREATE | DB_RECOVER | DB_THREAD | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK | DB_INIT_MPOOL)
    try Environment(home: home, flags: flags) { env in try configureCommon(env) }.close()
}

/// Voluntary context switches of this process so far (every thread).
func processVoluntarySwitches() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_nvcsw
}

/// Joins a site's existing environment (no recovery, no rep_start), with `transport` when given.
func joinEnvironment(_ home: String, transport: SiteTransport?) throws -> Environment {
    let flags = UInt32(DB_THREAD | DB_INIT_TXN | DB_INIT_LOG | DB_INIT_LOCK | DB_INIT_MPOOL)
    do {
        return try Environment(home: home, flags: flags) { env in
            try configureCommon(env)
            try transport?.install(on: env)
        }
    } catch let error as BDBError {
        if error.code == ENOENT { throw WriteError.environmentMissing(home) }
        throw error
    }
}

func openForWriting(_ environment: Environment) throws -> Database {
    do {
        return try environment.openDatabase("kv.db", create: true)
    } catch let error as BDBError {
        if error.code == EACCES { throw WriteError.notMaster }
        throw error
    }
}

/// Every key=value pair of the site's database, sorted by key.
public func dump(home: String) throws -> [String] {
    let environment = try joinEnvironment(home, transport: nil)
    defer { environment.close() }
    let database: Database
    do {
        database = try environment.openDatabase("kv.db", create: false, readOnly: true)
    } catch let error as BDBError {
        if error.code == ENOENT { return [] }
        throw error
    }
    defer { database.close() }
    return try database.all().map { pair in
        String(decoding: pair.key, as: UTF8.self) + "=" + String(decoding: pair.value, as: UTF8.self)
    }
}
