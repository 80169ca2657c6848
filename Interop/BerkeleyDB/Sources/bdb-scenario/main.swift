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
           bdb-scenario --bench [--transport broker|repmgr|both] [--writers 4] [--txns N] [--value-size BYTES]
           bdb-scenario broker [repbrokerd options]   (the scenario's brokers: repbrokerd)
           bdb-scenario site COMMAND [options]        (the scenario's Berkeley DB processes: bdb-site)
    """
/// Prints `value` as one line of JSON (sorted keys) and exits 0: every check held.
func printJSON<T: Encodable>(_ value: T) throws -> Never {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
    exit(0)
}

func fail(_ error: Error) -> Never {
    print("bdb-scenario: FAILED: \(error)")
    exit(1)
}

var options = ScenarioOptions()
options.broker = .current("broker")
options.site = .current("site")
var words = Array(CommandLine.arguments.dropFirst())
var bench = false
var transports = ["broker", "repmgr"]
if let index = words.firstIndex(of: "--bench") {
    words.remove(at: index)
    bench = true
    options.writers = 4
}
if let index = words.firstIndex(of: "--transport"), index + 1 < words.count {
    let choice = words[index + 1]
    guard ["broker", "repmgr", "both"].contains(choice) else {
        FileHandle.standardError.write(Data("bdb-scenario: --transport must be broker, repmgr or both\n".utf8))
        exit(64)
    }
    transports = choice == "both" ? ["broker", "repmgr"] : [choice]
    words.removeSubrange(index...(index + 1))
}
while !words.isEmpty {
    let name = words.removeFirst()
    if name == "--help" || name == "-h" {
        print(usage)
        exit(0)
    }
    guard !words.isEmpty else {
        FileHandle.standardError.write(Data("bdb-scenario: \(name) needs a value\n\(usage)\n".utf8))
        exit(64)
    }
    let value = words.removeFirst()
    switch (name, Int(value)) {
    case ("--sites", let n?) where n >= 3: options.sites = n
    case ("--writers", let n?) where n >= 1: options.writers = n
    case ("--txns", let n?) where n >= 1: options.txns = n
    case ("--value-size", let n?) where n >= 16: options.valueSize = n
    case ("--ack-policy", _) where ["none", "one", "quorum", "all"].contains(value): options.ackPolicy = value
    default:
        FileHandle.standardError.write(Data("bdb-scenario: bad option \(name) \(value)\n\(usage)\n".utf8))
        exit(64)
    }
}
if bench {
    do {
        var results: [CommitBenchResult] = []
        for transport in transports {
            let scenario = try Scenario(options: options) { print("bdb-scenario: \($0)") }
            results.append(transport == "broker" ? try scenario.benchBroker() : try scenario.benchRepmgr())
        }
        print("transport  txns      txns/s     commit p50 us  commit p99 us  perm failures")
        for r in results {
            // %-9@ does not pad on Linux Foundation: pad the name by hand.
            let name = r.transport.padding(toLength: 9, withPad: " ", startingAt: 0)
            print(name + String(format: "  %-8d  %-9.0f  %-13d  %-13d  %d", r.txnsCommitted,
                                r.txnsPerSecond, r.commitP50Microseconds, r.commitP99Microseconds, r.permFailures))
        }
        if results.count == 2 {
            print(String(format: "broker/repmgr: %.2fx transactions per second", results[0].txnsPerSecond / max(results[1].txnsPerSecond, 1)))
        }
        try printJSON(results)
    } catch {
        fail(error)
    }
}
do {
    try printJSON(try Scenario(options: options) { print("bdb-scenario: \($0)") }.run())
} catch {
    fail(error)
}
