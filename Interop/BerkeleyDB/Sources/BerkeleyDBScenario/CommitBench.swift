// Replicated transactions, the broker against Berkeley DB's own Replication Manager: three sites, the
// master's `writers` processes commit `txns` transactions each (one put, quorum ack policy), on each
// transport in the same run. Reports committed transactions per second and commit latency percentiles.
import BrokerHarness
import BrokerSystem
import Foundation

public struct CommitBenchResult: Codable, Sendable {
    public var transport: String
    public var txnsCommitted: Int
    public var txnsPerSecond: Double
    public var commitP50Microseconds: Int
    public var commitP99Microseconds: Int
    public var permFailures: Int
    enum CodingKeys: String, CodingKey {
        case transport, txnsCommitted = "txns_committed", txnsPerSecond = "txns_per_s"
        case commitP50Microseconds = "commit_p50_us", commitP99Microseconds = "commit_p99_us"
        case permFailures = "perm_failures"
    }
}

extension Scenario {
    /// The commit benchmark over the broker: site 1 master, clients synced, then the master's writers.
    public func benchBroker() throws -> CommitBenchResult {
        defer { shutDown() }
        try startGroup()
        return Self.result("broker", try write(at: members[0], phase: "bench"))
    }

    /// The same on Berkeley DB's Replication Manager (no broker): site 1 creates the group, the others join.
    public func benchRepmgr() throws -> CommitBenchResult {
        defer { shutDown() }
        let ports = members.map { _ in FreePort.next() }
        for (index, site) in members.enumerated() {
            var arguments = ["replicate", "--transport", "repmgr", "--home", site.home, "--repmgr-port", "\(ports[index])",
                             "--priority", "\(100 - index)"]
            arguments += index == 0 ? ["--master"] : ["--helper-port", "\(ports[0])"]
            site.replicate = try ChildProcess(name: "repmgr-\(site.id)", program: self.site, arguments: arguments,
                                              stderrPath: site.broker.directory + "/repmgr\(site.id).err")
            if index == 0 {
                try waitFor("site 1 to become master") { site.replicate?.lines.contains { $0.hasPrefix("ready") } == true }
            }
        }
        for site in members.dropFirst() {
            try waitFor("site \(site.id) to sync") { site.replicate?.lines.contains("startupdone") == true }
        }
        let first = members[0]
        let writers = try (0..<options.writers).map { index in
            try ChildProcess(name: "repmgr-write-\(index)", program: site,
                             arguments: ["write", "--transport", "repmgr", "--home", first.home, "--repmgr-port", "\(ports[0])",
                                         "--count", "\(options.txns)", "--prefix", "rm\(index)", "--value-size", "\(options.valueSize)"],
                             stderrPath: first.broker.directory + "/repmgr-write-\(index).err")
        }
        var written = Written()
        for writer in writers {
            guard writer.waitForExit(timeout: 600) == 0 else { throw ScenarioFailure("\(writer.name) failed") }
            writer.waitForOutputEnd(timeout: 5)
            if let summary = parseSummary(writer.lines) { written.add(summary) }
        }
        return Self.result("repmgr", written)
    }

    static func result(_ transport: String, _ written: Written) -> CommitBenchResult {
        let sorted = written.latencies.sorted()
        func percentile(_ p: Double) -> Int { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        return CommitBenchResult(
            transport: transport, txnsCommitted: written.committed,
            txnsPerSecond: Double(written.committed) / max(Double(written.elapsedMilliseconds) / 1000, 0.001),
            commitP50Microseconds: percentile(0.5), commitP99Microseconds: percentile(0.99),
            permFailures: written.permFailures)
    }
}
