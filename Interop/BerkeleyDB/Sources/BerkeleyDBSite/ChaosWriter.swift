// The chaos run's writer: a process that runs until it is stopped (SIGTERM) or killed, and commits one put per
// transaction whenever its site is master. Every attempt uses a new key (PREFIX-SEQ), so a key names one
// transaction of one writer incarnation.
//
// SIGTERM ends it cleanly between transactions. Prints one line per attempt, with the CLOCK_MONOTONIC time of its end in nanoseconds:
//   `acked KEY T`    the commit returned success and its PERMANENT record met the ack policy;
//   `unacked KEY T`  the commit returned success but the ack policy was not met (it may be rolled back);
//   `failed KEY T CODE` the commit did not return success (not master any more, handle dead, lockout ...).
// A site that is not master is asked again every 50 ms. DB_RUNRECOVERY ends the process with exit 4: the
// site needs recovery, which its replication process's restart runs.
import CBerkeleyDB
import Foundation
import RepBrokerClient
import Synchronization

/// Set by SIGTERM: the writer ends its transaction, closes the environment and exits 0.
private let stopRequested = Atomic<Bool>(false)

public struct ChaosWriteOptions: Sendable {
    public var home: String
    public var socketPath: String
    public var prefix: String
    public var ackPolicy: AckPolicy = .quorum
    public var ackTimeout: Double = 1
    /// A pause after each commit, so that a long run's database stays a size that dumps quickly.
    public var pauseMilliseconds = 20
    public init(home: String, socketPath: String, prefix: String) {
        self.home = home
        self.socketPath = socketPath
        self.prefix = prefix
    }
}

private func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

public func runChaosWriter(_ options: ChaosWriteOptions) throws -> Never {
    signal(SIGTERM) { _ in stopRequested.store(true, ordering: .relaxed) }
    // Whatever mask this process was started with: a blocked SIGTERM would never stop it.
    var stopSignal = sigset_t()
    sigemptyset(&stopSignal)
    sigaddset(&stopSignal, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &stopSignal, nil)
    var clientOptions = BrokerClientOptions(socketPath: options.socketPath, name: "bdb-chaos-write", roles: [.sender])
    clientOptions.ackPolicy = options.ackPolicy
    clientOptions.ackTimeout = options.ackTimeout
    let client = try BrokerClient(options: clientOptions)
    let transport = SiteTransport(client: client, siteID: client.siteID)
    let environment = try joinEnvironment(options.home, transport: transport)
    var database: Database?
    var sequence = 0
    while !stopRequested.load(ordering: .relaxed) {
        let isMaster = (try? environment.replicationRole()) == UInt32(DB_REP_MASTER)
        guard isMaster else {
            database?.close()
            database = nil
            usleep(50_000)
            continue
        }
        if database == nil { database = try? environment.openDatabase("kv.db", create: true) }
        guard let open = database else {
            usleep(50_000)
            continue
        }
        let key = "\(options.prefix)-\(String(format: "%07d", sequence))"
        sequence += 1
        let failuresBefore = transport.permanentFailures
        let sendsBefore = transport.permanentSends
        do {
            _ = try open.putRetrying(key: Array(key.utf8), value: benchValue(key, 64))
            // Acknowledged only on evidence: a PERMANENT send the broker confirmed during this transaction, and
            // none that failed (Berkeley DB does not call the send function for every commit in every state).
            let confirmed = transport.permanentSends > sendsBefore && transport.permanentFailures == failuresBefore
            say("\(confirmed ? "acked" : "unacked") \(key) \(monotonicNow())")
        } catch {
            say("failed \(key) \(monotonicNow()) \(error.code)")
            if error.code == DB_RUNRECOVERY { exit(4) }
            // A role change or a rollback leaves the handle unusable (DB_REP_HANDLE_DEAD): open it again.
            open.close()
            database = nil
            usleep(50_000)
        }
        if options.pauseMilliseconds > 0 { usleep(UInt32(options.pauseMilliseconds) * 1000) }
    }
    database?.close()
    environment.close()
    client.close()
    exit(0)
}

/// The replication counters of the environment at `home` (Environment.recordCounters), joined for the call.
public func recordCounters(home: String) throws -> (requested: Int, duplicated: Int) {
    let environment = try joinEnvironment(home, transport: nil)
    defer { environment.close() }
    return try environment.recordCounters()
}

/// The environment's replication role as a word: `master`, `client` or `none`.
public func replicationRole(home: String) throws -> String {
    let environment = try joinEnvironment(home, transport: nil)
    defer { environment.close() }
    switch Int32(try environment.replicationRole()) {
    case DB_REP_MASTER: return "master"
    case DB_REP_CLIENT: return "client"
    default: return "none"
    }
}
