// bdb-scenario: the Berkeley DB failover scenario through repbroker (see BerkeleyDBScenario/Scenario.swift).
import BerkeleyDBScenario
import BerkeleyDBSite
import BrokerDaemon
import BrokerHarness
import Foundation

// The scenario's own children: its brokers and its Berkeley DB processes are this program too.
switch CommandLine.arguments.dropFirst().first {
case "broker": DaemonMain.run(Array(CommandLine.arguments.dropFirst(2)))
case "site": SiteCommand.run(Array(CommandLine.arguments.dropFirst(2)))
default: break
}

let usage = """
    USAGE: bdb-scenario [--sites 3] [--writers 2] [--txns 500] [--ack-policy none|one|quorum|all] [--value-size BYTES]
           bdb-scenario --bench [--transport all|T,T...: local broker broker-c repmgr repmgr-nodelay repmgr-procs
                        repmgr-procs-nodelay broker-tls broker-c-tls]
                        [--writers 4|1,4,16,64] [--txns N] [--value-size BYTES] [--bulk on|off] [--rounds N]
                        [--broker-idle backoff|spin|block] [--json]
           bdb-scenario --isolation [--writers 2] [--txns N] [--bulk-writers 2] [--bulk-txns 3000]
                        [--bulk-value-size 16384] [--json]
           bdb-scenario broker [repbrokerd options]   (the scenario's brokers: repbrokerd)
           bdb-scenario site COMMAND [options]        (the scenario's Berkeley DB processes: bdb-site)

    --bench  Replicated commits, the broker against Berkeley DB's Replication Manager, every transport in the
             same run, one table per writer count: txn/s, commit p50 and p99, perm failures in the timed loop
             (start-up ones apart), TCP connections of the master's host, CPU seconds of every process per
             1000 commits. Rows marked PATCHED run repmgr with TCP_NODELAY forced by an LD_PRELOAD shim. The
             local row is the same writers with replication off: every row's "of local" is its fraction of it.
             Every row runs in its transport's best setting of DB_REP_CONF_BULK: on for stock repmgr (without
             NODELAY its commits need it), off for the others; --bulk on|off sets it for every row.
             --broker-idle sets the brokers' idle strategy (repbrokerd --idle-strategy; backoff by default).
             broker-tls and broker-c-tls are the broker rows over TLS 1.3 peer links (not in "all": name them).
             --rounds N runs the transports N times in turn (every second round in reverse) and prints each
             transport's median and range, and each TLS row against its plain twin.
    --isolation  Two replication groups on the same brokers: the first group's writers commit (quorum acks)
             alone, then beside a bulk load in a second group whose master is the same site (its writers
             commit large transactions without waiting for acks). Prints the first group's txn/s, commit p50
             and p99 and perm failures in each phase, the bulk load's rate, and the p99 ratio.
    """

func complainAndExit(_ text: String) -> Never {
    FileHandle.standardError.write(Data("bdb-scenario: \(text)\n\(usage)\n".utf8))
    exit(64)
}

func fail(_ error: Error) -> Never {
    print("bdb-scenario: FAILED: \(error)")
    exit(1)
}

func jsonLine<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

var options = ScenarioOptions()
options.broker = .current("broker")
options.site = .current("site")
var words = Array(CommandLine.arguments.dropFirst())
var bench = false
var isolation = false
var isolationOptions = IsolationOptions()
var jsonOnly = false
var transports = CommitTransport.standard
var rounds = 1
var writerCounts = [4]
var txnsGiven = false
var bulkChoice: Bool?
if let index = words.firstIndex(of: "--bench") {
    words.remove(at: index)
    bench = true
}
if let index = words.firstIndex(of: "--isolation") {
    words.remove(at: index)
    isolation = true
}
if let index = words.firstIndex(of: "--json") {
    words.remove(at: index)
    jsonOnly = true
}
while !words.isEmpty {
    let name = words.removeFirst()
    if name == "--help" || name == "-h" {
        print(usage)
        exit(0)
    }
    guard !words.isEmpty else { complainAndExit("\(name) needs a value") }
    let value = words.removeFirst()
    switch (name, Int(value)) {
    case ("--sites", let n?) where n >= 3: options.sites = n
    case ("--writers", _) where bench:
        let counts = value.split(separator: ",").compactMap { Int($0) }
        guard !counts.isEmpty, counts.count == value.split(separator: ",").count, counts.allSatisfy({ (1...256).contains($0) }) else {
            complainAndExit("--writers takes counts from 1 to 256, separated by commas, not '\(value)'")
        }
        writerCounts = counts
    case ("--writers", let n?) where n >= 1: options.writers = n
    case ("--txns", let n?) where n >= 1:
        options.txns = n
        txnsGiven = true
    case ("--value-size", let n?) where n >= 16: options.valueSize = n
    case ("--ack-policy", _) where ["none", "one", "quorum", "all"].contains(value): options.ackPolicy = value
    case ("--bulk", _) where ["on", "off"].contains(value): bulkChoice = value == "on"
    case ("--bulk-writers", let n?) where isolation && (1...64).contains(n): isolationOptions.bulkWriters = n
    case ("--bulk-txns", let n?) where isolation && n >= 1: isolationOptions.bulkTxns = n
    case ("--bulk-value-size", let n?) where isolation && (16...(1 << 20)).contains(n): isolationOptions.bulkValueSize = n
    case ("--rounds", let n?) where bench && (1...50).contains(n): rounds = n
    case ("--broker-idle", _) where ["backoff", "spin", "block"].contains(value): options.brokerIdle = value
    case ("--transport", _) where bench:
        if value == "all" { transports = CommitTransport.standard; continue }
        transports = value.split(separator: ",").map { name in
            guard let transport = CommitTransport(rawValue: String(name)) else { complainAndExit("unknown transport '\(name)'") }
            return transport
        }
    default:
        complainAndExit("bad option \(name) \(value)")
    }
}
options.bulk = bulkChoice ?? (bench || isolation)
if isolation {
    do {
        if !txnsGiven { options.txns = 1000 }
        let log: (String) -> Void = jsonOnly ? { _ in } : { print("bdb-scenario: \($0)") }
        let rows = try Scenario(options: options, log: log).isolationBench(isolationOptions)
        if !jsonOnly { print(Scenario.isolationTable(rows)) }
        print(try jsonLine(rows))
        exit(0)
    } catch {
        fail(error)
    }
}
guard !bench else {
    do {
        let shim = transports.contains { $0.isRepmgr } ? try NodelayShim.build() : nil
        var results: [CommitBenchResult] = []
        for writers in writerCounts {
            var rowOptions = options
            rowOptions.writers = writers
            // About 6,000 transactions per row unless --txns says how many per writer.
            if !txnsGiven { rowOptions.txns = max(50, 6000 / writers) }
            var rows: [CommitBenchResult] = []
            // With --rounds, the transports run in turn in every round, in reverse order in every second one.
            for round in 0..<rounds {
                for transport in round % 2 == 0 ? transports : transports.reversed() {
                    rowOptions.bulk = bulkChoice ?? transport.benchBulk
                    let log: (String) -> Void = jsonOnly ? { _ in } : { print("bdb-scenario: \($0)") }
                    do {
                        rows.append(try Scenario(options: rowOptions, log: log).bench(transport, shim: shim))
                    } catch {
                        // One row's failure (Berkeley DB's own repmgr has panicked here under load) is reported in
                        // its row; the other rows still run. A failed broker row fails the run at the end.
                        rows.append(.failed(transport, writers: writers, reason: "\(error)"))
                    }
                }
            }
            results += rows
            if !jsonOnly { print(rounds == 1 ? CommitTable.render(rows) : CommitTable.renderRounds(rows, transports: transports)) }
        }
        print(try jsonLine(results))
        let brokerFailures = results.filter { CommitTransport(rawValue: $0.transport)?.isBroker == true && $0.failure != nil }
        exit(brokerFailures.isEmpty ? 0 : 1)
    } catch {
        fail(error)
    }
}
do {
    print(try jsonLine(try Scenario(options: options) { print("bdb-scenario: \($0)") }.run()))
    exit(0)
} catch {
    fail(error)
}
