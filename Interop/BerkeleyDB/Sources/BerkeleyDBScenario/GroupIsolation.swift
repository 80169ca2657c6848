// Two Berkeley DB replication groups on the same brokers and links (`bdb-scenario --isolation`). The first
// group ("default") is the commit benchmark's: `writers` writer processes at site 1 commit `txns` transactions
// each (quorum acks, DB_TXN_SYNC). It runs twice: alone, then beside a bulk load in a second group ("bulk",
// its own environments at every site, master at site 1 too, so both groups' log records leave by the same
// links): `bulkWriters` processes committing `bulkTxns` transactions of `bulkValueSize` bytes without waiting
// for acks. Reported: the first group's txn/s, commit p50 / p99 and perm failures in each phase, the bulk
// load's transactions and log megabytes per second, and the p99 ratio.
import BrokerHarness
import BrokerSystem
import Foundation

public struct IsolationOptions: Sendable {
    public var bulkWriters = 2
    public var bulkTxns = 3000
    public var bulkValueSize = 16 << 10
    public init() {}
}

public struct IsolationRow: Codable, Sendable {
    public var phase: String
    public var txnsCommitted: Int
    public var txnsPerSecond: Double
    public var commitP50Microseconds: Int
    public var commitP99Microseconds: Int
    public var permFailures: Int
    /// The bulk group beside it (nil when alone): transactions committed and payload megabytes per second.
    public var bulkTxns: Int?
    public var bulkMegabytesPerSecond: Double?
    enum CodingKeys: String, CodingKey {
        case phase, txnsCommitted = "txns_committed", txnsPerSecond = "txns_per_s", commitP50Microseconds = "commit_p50_us"
        case commitP99Microseconds = "commit_p99_us", permFailures = "perm_failures", bulkTxns = "bulk_txns"
        case bulkMegabytesPerSecond = "bulk_mb_per_s"
    }
}

extension Scenario {
    public func isolationBench(_ isolation: IsolationOptions) throws -> [IsolationRow] {
        var bulkReplicas: [ChildProcess] = []
        defer {
            for child in bulkReplicas { child.kill9() }
            shutDown()
        }
        try startGroup()
        let alone = try timedCommits(try warmBrokerWriters(options.writers, prefix: "alone"))
        log("alone: \(alone.committed) transactions, p99 \(alone.latencies.sorted().percentile(0.99) ?? 0) us")

        // The second group: its own environment at every site, master at site 1.
        for (index, member) in members.enumerated() {
            let home = member.home + "-bulk"
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            var arguments = ["--home", home, "--socket", member.broker.socketPath, "--site-id", "\(member.id)",
                             "--nsites", "\(options.sites)", "--priority", "\(100 - Int(member.id))",
                             "--ack-policy", "none", "--group", "bulk"]
            if index == 0 { arguments.append("--master") }
            if options.bulk { arguments.append("--bulk") }
            let child = try ChildProcess(name: "replicate-bulk-\(member.id)", program: try SiteAgent.program(), arguments: arguments,
                                         stderrPath: member.broker.directory + "/replicate-bulk\(member.id).err")
            bulkReplicas.append(child)
            if index == 0 { try waitFor("site 1 to master the bulk group") { child.lines.contains("ready site=1") } }
        }
        for child in bulkReplicas.dropFirst() {
            try waitFor("\(child.name) to sync") { child.lines.contains("startupdone") }
        }
        log("bulk group: site 1 is master; sites \(members.dropFirst().map(\.id)) synced")
        let bulkWriters = try warmBrokerWriters(isolation.bulkWriters, prefix: "bulk", group: "bulk",
                                                home: members[0].home + "-bulk", txns: isolation.bulkTxns,
                                                valueSize: isolation.bulkValueSize, ackPolicy: "none")
        let writers = try warmBrokerWriters(options.writers, prefix: "beside")
        for writer in bulkWriters { writer.write("go\n") }
        let beside = try timedCommits(writers)
        let bulk = try timedCommits(bulkWriters, startedAlready: true)
        let exited = exitedProcesses() + bulkReplicas.filter { !$0.isRunning }.map(\.name)
        guard exited.isEmpty else { throw ScenarioFailure("exited during the run: \(exited.joined(separator: "; "))") }
        log("beside bulk: \(beside.committed) transactions; bulk: \(bulk.committed) transactions")
        func row(_ phase: String, _ written: Written, bulk: Written? = nil) -> IsolationRow {
            let sorted = written.latencies.sorted()
            return IsolationRow(
                phase: phase, txnsCommitted: written.committed,
                txnsPerSecond: Double(written.committed) / max(Double(written.elapsedMilliseconds) / 1000, 0.001),
                commitP50Microseconds: sorted.percentile(0.5) ?? 0, commitP99Microseconds: sorted.percentile(0.99) ?? 0,
                permFailures: written.permFailures, bulkTxns: bulk?.committed,
                bulkMegabytesPerSecond: bulk.map {
                    Double($0.committed * isolation.bulkValueSize) / 1e6 / max(Double($0.elapsedMilliseconds) / 1000, 0.001)
                })
        }
        return [row("alone", alone), row("beside a bulk load", beside, bulk: bulk)]
    }

    /// Says `go` to warmed writers (unless they were told already) and gathers their summaries.
    func timedCommits(_ writers: [ChildProcess], startedAlready: Bool = false) throws -> Written {
        if !startedAlready { for writer in writers { writer.write("go\n") } }
        var written = Written()
        for writer in writers {
            guard writer.waitForExit(timeout: 600) == 0 else { throw ScenarioFailure("\(writer.name) failed") }
            writer.waitForOutputEnd(timeout: 5)
            guard let summary = parseSummary(writer.lines) else { throw ScenarioFailure("\(writer.name): no summary") }
            written.add(summary)
        }
        return written
    }

    public static func isolationTable(_ rows: [IsolationRow]) -> String {
        var out = "phase               txns   txn/s    commit p50   commit p99   perm failures   bulk txns   bulk MB/s\n"
        func cell(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
        for r in rows {
            out += cell(r.phase, 20) + cell("\(r.txnsCommitted)", 7) + cell(String(format: "%.0f", r.txnsPerSecond), 9)
                + cell("\(r.commitP50Microseconds) us", 13) + cell("\(r.commitP99Microseconds) us", 13)
                + cell("\(r.permFailures)", 16) + cell(r.bulkTxns.map { "\($0)" } ?? "-", 12)
                + (r.bulkMegabytesPerSecond.map { String(format: "%.1f", $0) } ?? "-") + "\n"
        }
        if rows.count == 2 {
            out += String(format: "commit p99 beside the bulk load / alone: %.2fx\n",
                          Double(rows[1].commitP99Microseconds) / Double(max(rows[0].commitP99Microseconds, 1)))
        }
        return out
    }
}
