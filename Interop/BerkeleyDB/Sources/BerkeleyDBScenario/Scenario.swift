// The failover scenario with real Berkeley DB 5.3 through repbroker: three sites on loopback, each with its
// own broker, home directory, one replication process and several writer processes.
//  1. Site 1 starts as master; the others sync as clients.
//  2. The master's writers commit `txns` transactions each; every site's dump becomes identical.
//  3. kill -9 the master's broker and processes; the survivors elect a new master, whose writers commit more.
//  4. The old master's site restarts (recovery, as client), rejoins and syncs; every dump is identical again
//     and holds every transaction acknowledged under the ack policy before the kill.
//  5. Every broker has one peer link per other site, whatever the number of local processes.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation

public struct ScenarioOptions: Sendable {
    public var sites = 3
    public var writers = 2
    public var txns = 500
    public var ackPolicy = "quorum"
    public var valueSize = 100
    /// The replication processes batch log records (DB_REP_CONF_BULK); the commit benchmark sets it per row
    /// (`CommitTransport.benchBulk`), the isolation benchmark turns it on.
    public var bulk = false
    /// The brokers' idle strategy (`repbrokerd --idle-strategy`): backoff, spin or block.
    public var brokerIdle = "backoff"
    /// The broker and bdb-site programs. Tests use this package's products; bdb-scenario runs itself
    /// (`bdb-scenario broker`, `bdb-scenario site`), so that `swift run bdb-scenario` needs nothing else built.
    public var broker: Program = .named("bdb-brokerd")
    public var site: Program = .named("bdb-site")
    /// Certificates for TLS peer links between the brokers (siteN.pem/.key and ca.pem); nil: plain links.
    public var tlsCertificates: TestCertificates?
    public init() {}
}

public struct ScenarioResult: Codable, Sendable {
    public var sites: Int
    public var writers: Int
    public var txnsCommitted: Int
    public var converged: Bool
    /// From the master's kill -9 to a survivor's DB_EVENT_REP_MASTER.
    public var electedMilliseconds: Int
    /// From the master's kill -9 to the first commit at the new master.
    public var failoverMilliseconds: Int
    public var permFailures: Int
    public var elapsedMilliseconds: Int
    enum CodingKeys: String, CodingKey {
        case sites, writers, txnsCommitted = "txns_committed", converged, failoverMilliseconds = "failover_ms"
        case electedMilliseconds = "elected_ms"
        case permFailures = "perm_failures", elapsedMilliseconds = "elapsed_ms"
    }
}

public struct ScenarioFailure: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// One site: its broker, home and replication process.
final class Site: @unchecked Sendable {
    let broker: BrokerProcess
    let home: String
    var replicate: ChildProcess?
    var id: Int32 { broker.siteID }

    init(broker: BrokerProcess, home: String) {
        self.broker = broker
        self.home = home
    }
}

/// A writer's last line: {"committed":N,"acked":N,"perm_failures":N,"elapsed_ms":N,"latencies_us":[...]}.
func parseSummary(_ lines: [String]) -> [String: Any]? {
    guard let last = lines.last, let data = last.data(using: .utf8) else { return nil }
    return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
}

extension Scenario.Written {
    mutating func add(_ summary: [String: Any]) {
        committed += summary["committed"] as? Int ?? 0
        permFailures += summary["perm_failures"] as? Int ?? 0
        startupPermFailures += summary["startup_perm_failures"] as? Int ?? 0
        deadlockRetries += summary["deadlock_retries"] as? Int ?? 0
        latencies += summary["latencies_us"] as? [Int] ?? []
        elapsedMilliseconds = max(elapsedMilliseconds, summary["elapsed_ms"] as? Int ?? 0)
    }
}

public final class Scenario: @unchecked Sendable {
    let options: ScenarioOptions
    let log: (String) -> Void
    let sites: LocalSites
    let members: [Site]
    let started = Posix.monotonicNanoseconds()

    public init(options: ScenarioOptions, log: @escaping (String) -> Void) throws {
        self.options = options
        self.log = log
        sites = try LocalSites(count: options.sites, extraArguments: ["--heartbeat-ms", "250", "--idle-strategy", options.brokerIdle],
                               program: options.broker)
        members = sites.brokers.map { broker in
            let home = broker.directory + "/home\(broker.siteID)"
            try? FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            return Site(broker: broker, home: home)
        }
        if let certificates = options.tlsCertificates { useTLSLinks(certificates) }
    }

    var site: Program { options.site }

    /// The certificates of the brokers' TLS links, kept while the group runs (they are removed with the object).
    private(set) var certificates: TestCertificates?

    /// The brokers (not started yet) link over TLS 1.3 with `certificates`.
    func useTLSLinks(_ certificates: TestCertificates) {
        self.certificates = certificates
        for broker in sites.brokers { broker.extraArguments += certificates.brokerArguments("site\(broker.siteID)") }
    }

    func startReplication(_ site: Site, asMaster: Bool) throws {
        var arguments = ["--home", site.home, "--socket", site.broker.socketPath, "--site-id", "\(site.id)",
                         "--nsites", "\(options.sites)", "--priority", "\(100 - Int(site.id))",
                         "--ack-policy", options.ackPolicy]
        if asMaster { arguments.append("--master") }
        if options.bulk { arguments.append("--bulk") }
        site.replicate = try ChildProcess(name: "replicate-\(site.id)", program: try SiteAgent.program(), arguments: arguments,
                                          stderrPath: site.broker.directory + "/replicate\(site.id).err")
    }

    func waitFor(_ what: String, timeout: Double = 60, _ condition: () -> Bool) throws {
        guard Deadline.wait(timeout: timeout, interval: 0.05, condition) else {
            throw ScenarioFailure("timed out waiting for \(what)")
        }
    }

    func dump(_ site: Site) -> [String]? { ChildProcess.outputLines(of: self.site, ["dump", "--home", site.home]) }

    /// Runs `writers` writer processes at `site`; returns their summaries and acked keys.
    struct Written {
        var committed = 0
        var permFailures = 0
        var startupPermFailures = 0
        var deadlockRetries = 0
        var acked = Set<String>()
        var latencies: [Int] = []
        var elapsedMilliseconds = 0
    }

    func write(at site: Site, phase: String) throws -> Written {
        try collect(startWriters(at: site, phase: phase), at: site)
    }

    /// Starts `options.writers` writer processes at `site`.
    func startWriters(at site: Site, phase: String) throws -> [ChildProcess] {
        try (0..<options.writers).map { index in
            try ChildProcess(name: "write-\(site.id)-\(index)", program: self.site,
                             arguments: ["write", "--home", site.home, "--socket", site.broker.socketPath,
                                         "--count", "\(options.txns)", "--prefix", "\(phase)s\(site.id)w\(index)",
                                         "--value-size", "\(options.valueSize)", "--ack-policy", options.ackPolicy],
                             stderrPath: site.broker.directory + "/write-\(phase)-\(index).err")
        }
    }

    /// Waits for `writers` to finish; returns their summaries and acked keys.
    func collect(_ writers: [ChildProcess], at site: Site) throws -> Written {
        // While they run, the site has several local processes and still one link per peer site.
        let linked = site.broker.waitForStats(timeout: 30) { stats in
            stats.clients.count >= 1 + options.writers && stats.peers.allSatisfy { $0.state == .connected }
                || writers.allSatisfy { !$0.isRunning }
        }
        if linked, let stats = try? site.broker.stats() {
            log("site \(site.id): \(stats.clients.count) local clients, \(stats.peers.count) peer links")
            guard stats.peers.count == options.sites - 1 else { throw ScenarioFailure("not one link per peer site") }
        }
        var result = Written()
        for writer in writers {
            guard writer.waitForExit(timeout: 300) == 0 else {
                let err = (try? String(contentsOfFile: site.broker.directory + "/\(writer.name).err", encoding: .utf8)) ?? ""
                throw ScenarioFailure("\(writer.name) failed: \(err.suffix(500))")
            }
            writer.waitForOutputEnd(timeout: 5)
            let lines = writer.lines
            result.acked.formUnion(lines.filter { $0.hasPrefix("acked ") }.map { String($0.dropFirst(6)) })
            if let summary = parseSummary(lines) { result.add(summary) }
        }
        log("site \(site.id): \(result.committed) transactions committed, \(result.acked.count) acknowledged, "
            + "\(result.permFailures) perm failures")
        return result
    }

    /// Waits until every running site's dump is identical and holds `count` keys.
    func awaitConvergence(_ running: [Site], count: Int, timeout: Double = 120) throws -> [String] {
        var last: [[String]] = []
        let converged = Deadline.wait(timeout: timeout, interval: 0.5) {
            restartExitedReplication(running)
            last = running.compactMap(dump)
            return last.count == running.count && last.allSatisfy { $0 == last[0] } && last[0].count == count
        }
        guard converged, let result = last.first else {
            throw ScenarioFailure("dumps did not converge: sizes \(last.map(\.count)), expected \(count) keys\n"
                + replicationReport(running).joined(separator: "\n"))
        }
        return result
    }

    /// Restarts, as a client with recovery, a replication process that ended by itself, as a site's init system
    /// would: it exits for recovery (2) or to be re-initialized from the master (3).
    func restartExitedReplication(_ sites: [Site]) {
        for site in sites {
            guard let replicate = site.replicate, !replicate.isRunning,
                  replicate.process.terminationReason == .exit else { continue }
            log("site \(site.id): the replication process exited (\(replicate.process.terminationStatus)); restarting it")
            try? startReplication(site, asMaster: false)
        }
    }

    func elapsed() -> Int { Int((Posix.monotonicNanoseconds() - started) / 1_000_000) }

    /// Starts the brokers, site 1's replication process as master, and the others' as clients until synced.
    func startGroup() throws {
        try sites.start()
        log("\(options.sites) brokers linked")
        let first = members[0]
        try startReplication(first, asMaster: true)
        try waitFor("site 1 to become master") { first.replicate?.lines.contains("ready site=1") == true }
        for site in members.dropFirst() { try startReplication(site, asMaster: false) }
        for site in members.dropFirst() {
            try waitFor("site \(site.id) to sync") { site.replicate?.lines.contains("startupdone") == true }
        }
        log("site 1 is master; sites \(members.dropFirst().map(\.id)) synced as clients")
    }

    public func run() throws -> ScenarioResult {
        defer { shutDown() }
        try startGroup()
        let first = members[0]

        let before = try write(at: first, phase: "a")
        _ = try awaitConvergence(members, count: before.committed)
        log("all \(options.sites) dumps identical: \(before.committed) keys")

        // Fail the master's whole site. The survivors' output is counted first: they may elect a master
        // before kill9 returns.
        let survivors = Array(members.dropFirst())
        let lineCounts = survivors.map { $0.replicate?.lines.count ?? 0 }
        let killedAt = Posix.monotonicNanoseconds()
        first.replicate?.kill9()
        first.broker.kill9()
        var newMaster: Site?
        try waitFor("a survivor to be elected master") {
            for (index, site) in survivors.enumerated()
            where site.replicate?.lines.dropFirst(lineCounts[index]).contains("role=master") == true {
                newMaster = site
                return true
            }
            return false
        }
        let elected = Int((Posix.monotonicNanoseconds() - killedAt) / 1_000_000)
        guard let master = newMaster else { throw ScenarioFailure("no new master") }
        log("site \(master.id) elected master \(elected) ms after the kill")

        // Failover ends with the first commit at the new master: its writers start as soon as it is elected.
        let writers = try startWriters(at: master, phase: "b")
        try waitFor("the first commit at the new master") {
            writers.contains { $0.lines.contains { $0.hasPrefix("acked ") || $0.hasPrefix("unacked ") } }
                || writers.allSatisfy { !$0.isRunning }
        }
        let failover = Int((Posix.monotonicNanoseconds() - killedAt) / 1_000_000)
        log("first commit at site \(master.id) \(failover) ms after the kill")
        let after = try collect(writers, at: master)
        _ = try awaitConvergence(survivors, count: before.committed + after.committed)
        log("survivors identical: \(before.committed + after.committed) keys")

        // The old master comes back: recovery, as client.
        try first.broker.start()
        try waitFor("site 1's links") { first.broker.waitForPeers(timeout: 1) }
        try startReplication(first, asMaster: false)
        let final = try awaitConvergence(members, count: before.committed + after.committed)
        let keys = Set(final.compactMap { $0.split(separator: "=").first.map(String.init) })
        let lost = before.acked.subtracting(keys)
        guard lost.isEmpty else { throw ScenarioFailure("\(lost.count) acknowledged transactions lost, e.g. \(lost.first ?? "")") }
        log("all \(options.sites) dumps identical again: \(final.count) keys, every acknowledged transaction present")

        for site in members {
            let stats = try site.broker.stats()
            guard stats.peers.count == options.sites - 1, stats.peers.allSatisfy({ $0.state == .connected }) else {
                throw ScenarioFailure("site \(site.id) does not have one connected link per peer")
            }
            log("site \(site.id) broker: \(stats.peers.map { "peer \($0.siteID) sent \($0.messagesSent) received \($0.messagesReceived)" }.joined(separator: ", ")); acks in \(stats.totals.acksReceived)")
        }
        return ScenarioResult(sites: options.sites, writers: options.writers,
                              txnsCommitted: before.committed + after.committed, converged: true,
                              electedMilliseconds: elected, failoverMilliseconds: failover, permFailures: before.permFailures + after.permFailures,
                              elapsedMilliseconds: elapsed())
    }

    /// Each site's replication process: running or how it ended, its last status lines and the end of its stderr.
    func replicationReport(_ sites: [Site]) -> [String] {
        sites.map { site in
            guard let replicate = site.replicate else { return "site \(site.id): no replication process" }
            let state = replicate.isRunning ? "running" : "exited (\(replicate.process.terminationStatus))"
            let err = (try? String(contentsOfFile: site.broker.directory + "/replicate\(site.id).err", encoding: .utf8)) ?? ""
            return "site \(site.id): replication \(state); output: \(replicate.lines.suffix(12).joined(separator: " | "))"
                + "; stderr: \(err.suffix(800))"
        }
    }

    /// Processes of the group that exited while they should run, with the end of their stderr.
    func exitedProcesses() -> [String] {
        var exited: [String] = []
        for site in members {
            if let child = site.broker.child, !child.isRunning {
                exited.append("broker \(site.id): \(site.broker.log.suffix(800))")
            }
            if let replicate = site.replicate, !replicate.isRunning {
                let path = site.broker.directory + "/\(replicate.name.hasPrefix("repmgr") ? "repmgr" : "replicate")\(site.id).err"
                let err = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
                // A crash report starts with its reason and the crashed thread's frames.
                let crash = err.range(of: "*** ").map { String(err[$0.lowerBound...].prefix(2500)) }
                // How it ended: its status (2: recovery needed, 3: re-initialization) and its last status lines.
                let status = replicate.process.terminationReason == .uncaughtSignal
                    ? "killed by signal \(replicate.process.terminationStatus)" : "exit \(replicate.process.terminationStatus)"
                let said = replicate.lines.suffix(6).joined(separator: " | ")
                exited.append("\(replicate.name) (\(status); said: \(said)): \(crash ?? String(err.suffix(800)))")
            }
        }
        return exited
    }

    func shutDown() {
        for site in members { site.replicate?.kill9() }
        sites.shutDown()
    }
}
