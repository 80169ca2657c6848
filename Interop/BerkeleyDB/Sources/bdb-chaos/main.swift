// bdb-chaos: a Berkeley DB group through repbroker under seeded, overlapping faults (see
// BerkeleyDBScenario/Chaos.swift). Ends with one JSON line; exit 1 when a check fails.
import BerkeleyDBScenario
import BerkeleyDBSite
import BrokerDaemon
import BrokerHarness
import Foundation

// The run's own children: its brokers and its Berkeley DB processes are this program too.
switch CommandLine.arguments.dropFirst().first {
case "broker": DaemonMain.run(Array(CommandLine.arguments.dropFirst(2)))
case "site": SiteCommand.run(Array(CommandLine.arguments.dropFirst(2)))
default: break
}

let usage = """
    USAGE: bdb-chaos [--sites 3] [--minutes 1] [--seed N] [--heartbeat-ms 250] [--checkpoint-minutes 5]
                     [--faults KIND,...] [--loopback] [--tls] [--keep] [--schedule] [--upgrade-from BROKER]
           bdb-chaos broker [repbrokerd options]   (the run's brokers: repbrokerd)
           bdb-chaos site COMMAND [options]        (the run's Berkeley DB processes: bdb-site)

    A group of 3 to 5 sites, each with its broker, replication process and two writers committing with
    quorum acks, under a seeded schedule of faults for --minutes: kill -9 of a broker, a replication process
    (restarted with recovery) or a writer; SIGSTOP of a broker for 2 to 5 s; a partition of the master or of
    a minority for 2 to 10 s; one broker restarted at another address. At most a minority of sites is hurt at
    a time. --faults draws only the kinds named (broker_kill, replication_kill, writer_kill, broker_stop,
    partition_master, partition_minority, broker_move). Every --checkpoint-minutes (0: never) and at the end, all faults heal, the writers stop, and the run
    waits until every site's dump is identical with exactly one master and checks that every acknowledged
    transaction is there.

    Sites run in network namespaces on a bridge when the machine permits (root and iproute2); otherwise, or
    with --loopback, on loopback, and partitions are skipped (said so). The same --seed replays the same
    schedule (--schedule prints it and exits). --tls links the brokers over TLS 1.3 (certificates made with the
    openssl tool; the host needs libssl3), beside the group key. --keep keeps the run's directory (it is always kept on failure).
    --upgrade-from BROKER: a rolling upgrade instead of faults: the brokers start as BROKER (the previous
    release's repbrokerd, as scripts/check-upgrade builds it) and are upgraded one at a time to this build, at
    evenly spaced moments, while the writers commit; every broker must link with every other after each step,
    none may refuse a peer, and no acknowledged commit may be lost.
    Prints the faults as they happen, then one JSON line: faults and skipped faults by kind, processes that
    exited unasked, commits acked, unacked and failed, lost (0, or the run fails), checks, the longest
    convergence, failovers (a fault on the master's site to the next acknowledged commit) and the seed.
    """

func complainAndExit(_ text: String) -> Never {
    FileHandle.standardError.write(Data("bdb-chaos: \(text)\n\(usage)\n".utf8))
    exit(64)
}

var options = ChaosOptions()
options.broker = .current("broker")
options.site = .current("site")
var printSchedule = false
var words = Array(CommandLine.arguments.dropFirst())
while !words.isEmpty {
    let name = words.removeFirst()
    switch name {
    case "--help", "-h":
        print(usage)
        exit(0)
    case "--loopback": options.namespaces = false
    case "--tls": options.tls = true
    case "--keep": options.keepDirectory = true
    case "--schedule": printSchedule = true
    default:
        guard !words.isEmpty else { complainAndExit("\(name) needs a value") }
        let value = words.removeFirst()
        switch name {
        case "--sites":
            guard let sites = Int(value), (3...5).contains(sites) else { complainAndExit("--sites must be 3 to 5") }
            options.sites = sites
        case "--minutes":
            guard let minutes = Double(value), minutes > 0 else { complainAndExit("--minutes must be positive") }
            options.minutes = minutes
        case "--seed":
            guard let seed = UInt64(value) else { complainAndExit("--seed must be an unsigned integer") }
            options.seed = seed
        case "--heartbeat-ms":
            guard let milliseconds = Int(value), (10...600_000).contains(milliseconds) else {
                complainAndExit("--heartbeat-ms must be 10 to 600000")
            }
            options.heartbeatMilliseconds = milliseconds
        case "--faults":
            var kinds = Set<FaultKind>()
            for name in value.split(separator: ",") {
                guard let kind = FaultKind(rawValue: String(name)) else { complainAndExit("--faults: no fault kind '\(name)'") }
                kinds.insert(kind)
            }
            options.faultKinds = kinds
        case "--upgrade-from":
            guard FileManager.default.isExecutableFile(atPath: value) else { complainAndExit("--upgrade-from: \(value) is not a program") }
            options.upgradeFrom = Program(executable: value)
            options.faultKinds = []
        case "--checkpoint-minutes":
            guard let minutes = Double(value), minutes >= 0 else { complainAndExit("--checkpoint-minutes must be 0 or more") }
            options.checkpointMinutes = minutes
        default:
            complainAndExit("unknown option \(name)")
        }
    }
}

if printSchedule {
    for fault in ChaosSchedule.plan(seed: options.seed, seconds: options.minutes * 60, kinds: options.faultKinds) {
        print(String(format: "%7.2f s  ", fault.at) + fault.kind.rawValue
            + (fault.duration > 0 ? String(format: " for %.1f s", fault.duration) : "") + "  pick \(fault.pick)")
    }
    exit(0)
}

do {
    let result = try Chaos(options: options) { line in
        FileHandle.standardError.write(Data("bdb-chaos: \(line)\n".utf8))
    }.run()
    FileHandle.standardError.write(Data("bdb-chaos: \(Chaos.failoverTable(result))\n".utf8))
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    print(String(decoding: try encoder.encode(result), as: UTF8.self))
    if options.upgradeFrom != nil && (result.upgraded != options.sites || result.refusals > 0) {
        print("bdb-chaos: FAILED: \(result.upgraded) of \(options.sites) brokers upgraded, \(result.refusals) peer connections refused")
        exit(1)
    }
} catch {
    print("bdb-chaos: FAILED: \(error)")
    exit(1)
}
