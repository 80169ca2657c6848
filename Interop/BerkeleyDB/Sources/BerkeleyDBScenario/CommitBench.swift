// Replicated commits, the broker against Berkeley DB's own Replication Manager at its best: three sites, the
// master's writers commit `txns` transactions each (one put, quorum ack policy, ack timeout 1 s, commits
// flushed: DB_TXN_SYNC, the default), every transport in the same run:
//   local                 the same writer processes and commits with replication off: one environment, no
//                         transport. The ceiling any transport can reach on the machine;
//   broker                the writers are processes, each with its broker client (the FAQ's model);
//   repmgr                repmgr's idiomatic setup: writer threads in the one repmgr process per site, one
//                         shared handle (DB_THREAD), DB_REP_CONF_BULK;
//   repmgr-procs          writers as subordinate repmgr processes: how repmgr serves several writer processes;
//   *-nodelay             the same with TCP_NODELAY forced on repmgr's sockets by an LD_PRELOAD shim: a
//                         patched repmgr (5.3 never sets it), to show what repmgr could do.
// Every writer commits one warm-up transaction, then all start their timed loops together (`go`); start-up
// perm failures are reported apart. Reported: txn/s, commit p50/p99, perm failures in the timed loop, the TCP
// connections of the master's host, and the CPU seconds of every process of the group per 1000 commits.
import BrokerHarness
import BrokerSystem
import Foundation

public enum CommitTransport: String, CaseIterable, Codable, Sendable {
    /// Replication off: the writers commit to a local environment (the ceiling).
    case local
    case broker
    /// The broker, with writer processes in C (libdb and librepbroker: Interop/BerkeleyDB/c/bdb_c_writer.c).
    case brokerC = "broker-c"
    case repmgr
    case repmgrNodelay = "repmgr-nodelay"
    case repmgrProcesses = "repmgr-procs"
    case repmgrProcessesNodelay = "repmgr-procs-nodelay"
    /// The broker rows with TLS 1.3 peer links (certificates made with the openssl tool).
    case brokerTLS = "broker-tls"
    case brokerCTLS = "broker-c-tls"

    /// The rows of `--transport all`: every transport with plain links (the TLS rows are asked for by name).
    public static let standard: [CommitTransport] = [.local, .broker, .brokerC, .repmgr, .repmgrNodelay, .repmgrProcesses,
                                                     .repmgrProcessesNodelay]

    var writersAreThreads: Bool { self == .repmgr || self == .repmgrNodelay }
    var patched: Bool { self == .repmgrNodelay || self == .repmgrProcessesNodelay }
    public var isBroker: Bool { [.broker, .brokerC, .brokerTLS, .brokerCTLS].contains(self) }
    public var isRepmgr: Bool { !isBroker && self != .local }
    /// Writer processes in C (bdb_c_writer) rather than Swift.
    public var cWriters: Bool { self == .brokerC || self == .brokerCTLS }
    /// Peer links over TLS 1.3.
    public var tls: Bool { self == .brokerTLS || self == .brokerCTLS }
    /// Whether the row batches log records (DB_REP_CONF_BULK) unless `--bulk` says otherwise: each transport
    /// in its best configuration, as measured with `--bulk on` and `--bulk off` (BENCHMARKS.md). Stock repmgr
    /// needs BULK: without TCP_NODELAY a commit's two messages wait out the delayed ACK. With NODELAY, and over
    /// the broker, BULK costs: it doubles a lone writer's commit p50, and with several writer processes the
    /// clients miss records, re-request them, and commits stall.
    public var benchBulk: Bool { self == .repmgr || self == .repmgrProcesses }

    public var label: String {
        switch self {
        case .local: return "local: no replication, writer processes"
        case .broker: return "broker, writer processes, BULK"
        case .brokerC: return "broker, C writer processes, BULK"
        case .brokerTLS: return "broker (TLS links), writer processes, BULK"
        case .brokerCTLS: return "broker (TLS links), C writer processes, BULK"
        case .repmgr: return "repmgr, writer threads, BULK"
        case .repmgrNodelay: return "repmgr PATCHED (NODELAY), threads, BULK"
        case .repmgrProcesses: return "repmgr, writer processes, BULK"
        case .repmgrProcessesNodelay: return "repmgr PATCHED (NODELAY), processes, BULK"
        }
    }
}

public struct CommitBenchResult: Codable, Sendable {
    public var transport: String
    public var label: String
    public var writers: Int
    public var txnsCommitted: Int
    public var txnsPerSecond: Double
    public var commitP50Microseconds: Int
    public var commitP99Microseconds: Int
    public var permFailures: Int
    public var startupPermFailures: Int
    public var deadlockRetries: Int
    public var tcpConnectionsPerHost: Int
    public var cpuSecondsPer1000Commits: Double
    /// The same CPU by role: the brokers, the replication processes (with repmgr's writer threads), the writer
    /// processes.
    public var cpuBrokers: Double
    public var cpuReplication: Double
    public var cpuWriters: Double
    /// Voluntary context switches per commit (each a sleep and a wake-up) in the timed loop: every process of
    /// the group, and by role as the CPU.
    public var wakeups: Double = 0
    public var wakeupsBrokers: Double = 0
    public var wakeupsReplication: Double = 0
    public var wakeupsWriters: Double = 0
    /// Messages the brokers did not deliver during the row (dropped, refused or unroutable, every broker; the
    /// repmgr and local rows: 0). Berkeley DB asks again for a lost log record, so a drop costs a commit its
    /// ack timeout rather than the record.
    public var brokerDropped = 0
    /// Times a peer link's flow ran out of window with frames queued, and frames sent again after a reconnect,
    /// every broker of the group during the row.
    public var brokerFlowStalls = 0
    public var brokerResent = 0
    /// Log records the client sites missed and asked for again, and received twice, during the row (every
    /// replicated row): a client that waits out a gap holds back the acks of every record after it.
    public var clientRecordsRequested = 0
    public var clientRecordsDuplicated = 0
    /// Commits by latency: how many took at most each bound of `histogramBoundsMicroseconds` (the last bucket:
    /// longer than the last bound).
    public var latencyHistogram: [Int]
    public var durability = CommitBenchResult.durabilitySetting
    /// Why the row has no figures: a process of the group failed during it (nil: it ran).
    public var failure: String?
    enum CodingKeys: String, CodingKey {
        case transport, label, writers, txnsCommitted = "txns_committed", txnsPerSecond = "txns_per_s"
        case commitP50Microseconds = "commit_p50_us", commitP99Microseconds = "commit_p99_us"
        case permFailures = "perm_failures", startupPermFailures = "startup_perm_failures"
        case deadlockRetries = "deadlock_retries", tcpConnectionsPerHost = "tcp_connections_per_host"
        case cpuSecondsPer1000Commits = "cpu_s_per_1000_commits", durability
        case cpuBrokers = "cpu_s_per_1000_brokers", cpuReplication = "cpu_s_per_1000_replication"
        case cpuWriters = "cpu_s_per_1000_writers", latencyHistogram = "latency_histogram", failure
        case wakeups = "wakeups_per_commit", wakeupsBrokers = "wakeups_per_commit_brokers"
        case wakeupsReplication = "wakeups_per_commit_replication", wakeupsWriters = "wakeups_per_commit_writers"
        case brokerDropped = "broker_dropped", brokerFlowStalls = "broker_flow_stalls", brokerResent = "broker_resent"
        case clientRecordsRequested = "client_records_requested", clientRecordsDuplicated = "client_records_duplicated"
    }

    /// A row whose group failed: reported with its reason, no figures.
    public static func failed(_ transport: CommitTransport, writers: Int, reason: String) -> CommitBenchResult {
        CommitBenchResult(transport: transport.rawValue, label: transport.label, writers: writers, txnsCommitted: 0,
                          txnsPerSecond: 0, commitP50Microseconds: 0, commitP99Microseconds: 0, permFailures: 0,
                          startupPermFailures: 0, deadlockRetries: 0, tcpConnectionsPerHost: 0,
                          cpuSecondsPer1000Commits: 0, cpuBrokers: 0, cpuReplication: 0, cpuWriters: 0,
                          latencyHistogram: [], failure: reason)
    }

    public static let durabilitySetting = "DB_TXN_SYNC commits, quorum acks, ack timeout 1 s"
    public static let histogramBoundsMicroseconds = [1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
                                                     1_000_000]

    static func histogram(_ latencies: [Int]) -> [Int] {
        var buckets = [Int](repeating: 0, count: histogramBoundsMicroseconds.count + 1)
        for latency in latencies {
            buckets[histogramBoundsMicroseconds.firstIndex { latency <= $0 } ?? histogramBoundsMicroseconds.count] += 1
        }
        return buckets
    }
}

extension Scenario {
    /// One row of the benchmark: a fresh group on `transport`, `options.writers` writers of `options.txns`.
    public func bench(_ transport: CommitTransport, shim: String? = nil) throws -> CommitBenchResult {
        defer { shutDown() }
        if transport.tls && certificates == nil {
            useTLSLinks(try TestCertificates.group(sites: members.map(\.id)))
        }
        let environment = transport.patched ? ["LD_PRELOAD": try shim ?? NodelayShim.build()] : [:]
        let run = transport == .local ? try startLocalWriters()
            : transport.isRepmgr ? try startRepmgrWriters(transport, environment)
            : try startBrokerWriters(cWriter: transport.cWriters ? try CWriter.build() : nil)
        let connections = ProcessStats.establishedConnections(of: run.hostProcesses.map(\.pid))
        func cpu(_ processes: [ChildProcess]) -> Double { processes.reduce(0) { $0 + ProcessStats.cpuSeconds($1.pid) } }
        let brokersBefore = cpu(run.brokers)
        let replicationBefore = cpu(run.replicas)
        func switches(_ processes: [ChildProcess]) -> Int { processes.reduce(0) { $0 + ProcessStats.voluntarySwitches($1.pid) } }
        let brokerSwitchesBefore = switches(run.brokers)
        let countersBefore = brokerCounters()
        let clientsBefore = transport == .local ? (0, 0) : clientRecordCounters()
        let replicationSwitchesBefore = switches(run.replicas)
        for writer in run.writers { writer.write("go\n") }
        var written = Written()
        var cpuOfWriters = 0.0
        var writerSwitches = 0
        for writer in run.writers {
            if run.writersAreThreads {
                try waitFor("the writer threads' summary", timeout: 600) { writer.lines.last?.hasPrefix("{") == true }
            } else {
                guard writer.waitForExit(timeout: 600) == 0 else { throw ScenarioFailure("\(writer.name) failed") }
                writer.waitForOutputEnd(timeout: 5)
            }
            guard let summary = parseSummary(writer.lines) else { throw ScenarioFailure("\(writer.name): no summary") }
            written.add(summary)
            if !run.writersAreThreads {
                cpuOfWriters += Double(summary["cpu_ms"] as? Int ?? 0) / 1000
                writerSwitches += summary["voluntary_switches"] as? Int ?? 0
            }
        }
        let counters = brokerCounters()
        let clients = transport == .local ? (0, 0) : clientRecordCounters()
        let exited = exitedProcesses()
        guard exited.isEmpty else { throw ScenarioFailure("exited during the run: \(exited.joined(separator: "; "))") }
        let perThousand = 1000 / max(Double(written.committed), 1)
        let cpuBrokers = (cpu(run.brokers) - brokersBefore) * perThousand
        let cpuReplication = (cpu(run.replicas) - replicationBefore) * perThousand
        let cpuWriters = cpuOfWriters * perThousand
        let perCommit = 1 / max(Double(written.committed), 1)
        let wakeupsBrokers = Double(switches(run.brokers) - brokerSwitchesBefore) * perCommit
        let wakeupsReplication = Double(switches(run.replicas) - replicationSwitchesBefore) * perCommit
        let wakeupsWriters = Double(writerSwitches) * perCommit
        let sorted = written.latencies.sorted()
        func percentile(_ p: Double) -> Int { sorted.percentile(p) ?? 0 }
        let label = options.bulk && transport != .local ? transport.label
            : transport.label.replacingOccurrences(of: ", BULK", with: "")
        let seconds: Double = max(Double(written.elapsedMilliseconds) / 1000, 0.001)
        let wakeups: Double = wakeupsBrokers + wakeupsReplication + wakeupsWriters
        var result = CommitBenchResult(
            transport: transport.rawValue,
            label: label,
            writers: options.writers,
            txnsCommitted: written.committed,
            txnsPerSecond: Double(written.committed) / seconds,
            commitP50Microseconds: percentile(0.5), commitP99Microseconds: percentile(0.99),
            permFailures: written.permFailures, startupPermFailures: written.startupPermFailures,
            deadlockRetries: written.deadlockRetries, tcpConnectionsPerHost: connections,
            cpuSecondsPer1000Commits: cpuBrokers + cpuReplication + cpuWriters,
            cpuBrokers: cpuBrokers, cpuReplication: cpuReplication, cpuWriters: cpuWriters,
            latencyHistogram: CommitBenchResult.histogram(written.latencies))
        result.wakeups = wakeups
        result.wakeupsBrokers = wakeupsBrokers
        result.wakeupsReplication = wakeupsReplication
        result.wakeupsWriters = wakeupsWriters
        result.brokerDropped = counters.dropped - countersBefore.dropped
        result.brokerFlowStalls = counters.stalls - countersBefore.stalls
        result.brokerResent = counters.resent - countersBefore.resent
        result.clientRecordsRequested = clients.0 - clientsBefore.0
        result.clientRecordsDuplicated = clients.1 - clientsBefore.1
        return result
    }

    /// Log records missed and asked for again, and received twice, summed over the client sites (site 1 is
    /// the master).
    func clientRecordCounters() -> (Int, Int) {
        members.dropFirst().reduce((0, 0)) { sum, site in
            // "requested N duplicated M"
            let words = ChildProcess.outputLines(of: self.site, ["records", "--home", site.home])?.first?.split(separator: " ") ?? []
            guard words.count == 4, let requested = Int(words[1]), let duplicated = Int(words[3]) else { return sum }
            return (sum.0 + requested, sum.1 + duplicated)
        }
    }

    /// Messages not delivered, flow stalls and frames sent again, every broker of the group (0 when the row
    /// runs no brokers).
    func brokerCounters() -> (dropped: Int, stalls: Int, resent: Int) {
        members.reduce((0, 0, 0)) { sum, site in
            guard site.broker.child != nil, let stats = try? site.broker.stats() else { return sum }
            let totals = stats.totals
            return (sum.0 + totals.dropped + totals.refused + totals.unroutable,
                    sum.1 + stats.peers.reduce(0) { $0 + $1.flows.reduce(0) { $0 + $1.stalls } },
                    sum.2 + stats.peers.reduce(0) { $0 + $1.resent })
        }
    }

    /// The processes of one benchmark row: writers (warmed, waiting for `go`), the master's host, the group's
    /// brokers and replication processes.
    struct BenchRun {
        var writers: [ChildProcess]
        var writersAreThreads: Bool
        var hostProcesses: [ChildProcess]
        var brokers: [ChildProcess] = []
        var replicas: [ChildProcess]
    }

    /// The broker's group, with `writers` warmed-up writer processes at site 1 (the C writer at `cWriter`, or
    /// `bdb-site write`).
    func startBrokerWriters(cWriter: String? = nil) throws -> BenchRun {
        try startGroup()
        let first = members[0]
        let writers = try warmBrokerWriters(options.writers, prefix: "bench", cWriter: cWriter)
        let brokers = members.compactMap(\.broker.child)
        let replicas = members.compactMap(\.replicate)
        return BenchRun(writers: writers, writersAreThreads: false,
                        hostProcesses: [first.broker.child, first.replicate].compactMap { $0 } + writers,
                        brokers: brokers, replicas: replicas)
    }

    /// No replication: site 1's environment made without DB_INIT_REP, and the same writer processes committing
    /// to it with no transport.
    func startLocalWriters() throws -> BenchRun {
        let first = members[0]
        let maker = try ChildProcess(name: "local-env", program: site, arguments: ["local-env", "--home", first.home],
                                     stderrPath: first.broker.directory + "/local-env.err")
        guard maker.waitForExit(timeout: 60) == 0 else { throw ScenarioFailure("cannot make the local environment") }
        let writers = try (0..<options.writers).map { index in
            try ChildProcess(name: "local-write-\(index)", program: site,
                             arguments: ["write", "--transport", "local", "--home", first.home, "--count", "\(options.txns)",
                                         "--prefix", "local\(index)", "--value-size", "\(options.valueSize)",
                                         "--warm-up", "--wait-for-go"],
                             stderrPath: first.broker.directory + "/local-write-\(index).err")
        }
        try awaitWarm(writers, at: first)
        return BenchRun(writers: writers, writersAreThreads: false, hostProcesses: writers, replicas: [])
    }

    /// Berkeley DB's Replication Manager (no broker): site 1 creates the group, the others join; the writers
    /// are threads of site 1's process or subordinate processes.
    func startRepmgrWriters(_ transport: CommitTransport, _ environment: [String: String]) throws -> BenchRun {
        let ports = members.map { _ in FreePort.next() }
        for (index, site) in members.enumerated() {
            var arguments = ["replicate", "--transport", "repmgr", "--home", site.home, "--repmgr-port", "\(ports[index])",
                             "--priority", "\(100 - index)"]
            arguments += index == 0 ? ["--master"] : ["--helper-port", "\(ports[0])"]
            if index == 0 && transport.writersAreThreads {
                arguments += ["--writer-threads", "\(options.writers)", "--count", "\(options.txns)",
                              "--value-size", "\(options.valueSize)"]
            }
            if !options.bulk { arguments.append("--no-bulk") }
            site.replicate = try ChildProcess(name: "repmgr-\(site.id)", program: self.site, arguments: arguments,
                                              stderrPath: site.broker.directory + "/repmgr\(site.id).err",
                                              environment: environment)
            if index == 0 {
                try waitFor("site 1 to become master") { site.replicate?.lines.contains { $0.hasPrefix("ready") } == true }
            }
        }
        for site in members.dropFirst() {
            try waitFor("site \(site.id) to sync") { site.replicate?.lines.contains("startupdone") == true }
        }
        let first = members[0]
        let replicas = members.compactMap(\.replicate)
        guard let master = first.replicate else { throw ScenarioFailure("no repmgr process at site 1") }
        if transport.writersAreThreads {
            master.write("warm\n")
            try waitFor("the writer threads to warm up", timeout: 300) { master.lines.contains("warm") }
            return BenchRun(writers: [master], writersAreThreads: true, hostProcesses: [master], replicas: replicas)
        }
        let writers = try (0..<options.writers).map { index in
            try ChildProcess(name: "repmgr-write-\(index)", program: site,
                             arguments: ["write", "--transport", "repmgr", "--home", first.home,
                                         "--repmgr-port", "\(ports[0])", "--count", "\(options.txns)",
                                         "--prefix", "rm\(index)", "--value-size", "\(options.valueSize)",
                                         "--warm-up", "--wait-for-go"],
                             stderrPath: first.broker.directory + "/repmgr-write-\(index).err", environment: environment)
        }
        try awaitWarm(writers, at: first)
        return BenchRun(writers: writers, writersAreThreads: false, hostProcesses: [master] + writers, replicas: replicas)
    }

    /// `count` writer processes at site 1 of the running group `group` (home `home`, default site 1's), warmed up
    /// and waiting for `go`.
    func warmBrokerWriters(_ count: Int, prefix: String, group: String = "default", home: String? = nil, txns: Int? = nil,
                           valueSize: Int? = nil, ackPolicy: String? = nil, cWriter: String? = nil) throws -> [ChildProcess] {
        let first = members[0]
        let writers = try (0..<count).map { index in
            let arguments = ["--home", home ?? first.home, "--socket", first.broker.socketPath,
                             "--count", "\(txns ?? options.txns)", "--prefix", "\(prefix)-w\(index)",
                             "--value-size", "\(valueSize ?? options.valueSize)",
                             "--ack-policy", ackPolicy ?? options.ackPolicy, "--group", group, "--warm-up", "--wait-for-go"]
            let stderrPath = first.broker.directory + "/write-\(prefix)-\(index).err"
            if let cWriter {
                return try ChildProcess(name: "write-\(prefix)-\(index)", executable: cWriter, arguments: arguments,
                                        stderrPath: stderrPath)
            }
            return try ChildProcess(name: "write-\(prefix)-\(index)", program: site, arguments: ["write"] + arguments,
                                    stderrPath: stderrPath)
        }
        try awaitWarm(writers, at: first)
        return writers
    }

    func awaitWarm(_ writers: [ChildProcess], at site: Site) throws {
        try waitFor("\(writers.count) writers to warm up", timeout: 300) {
            if let failed = writers.first(where: { !$0.isRunning }) {
                let err = (try? String(contentsOfFile: site.broker.directory + "/\(failed.name).err", encoding: .utf8)) ?? ""
                log("\(failed.name) exited before its timed loop: \(err.suffix(300))")
                return true
            }
            return writers.allSatisfy { $0.lines.contains("warm") }
        }
        guard writers.allSatisfy({ $0.isRunning }) else { throw ScenarioFailure("a writer failed during start-up") }
    }
}

/// The LD_PRELOAD shim that forces TCP_NODELAY on a process's TCP sockets (shims/tcp_nodelay.c), built once.
public enum NodelayShim {
    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shims/tcp_nodelay.c").path

    /// Compiles the shim with the system's C compiler into a temporary directory; returns the library's path.
    public static func build() throws -> String {
        let directory = try TemporaryDirectory(prefix: "rbshim")
        let library = directory.path + "/tcp_nodelay.so"
        let compiler = try ChildProcess(name: "cc", executable: "/usr/bin/env",
                                        arguments: ["cc", "-O2", "-shared", "-fPIC", "-o", library, source, "-ldl"],
                                        stderrPath: directory.path + "/cc.err")
        guard compiler.waitForExit(timeout: 60) == 0, FileManager.default.fileExists(atPath: library) else {
            let why = (try? String(contentsOfFile: directory.path + "/cc.err", encoding: .utf8)) ?? ""
            throw ScenarioFailure("cannot build the TCP_NODELAY shim from \(source): \(why)")
        }
        return library
    }
}
