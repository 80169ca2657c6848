// repbroker-bench isolation: two groups on the same brokers and peer links. "bulk": `senders` processes per
// site sending as fast as the transport takes them (half unicast, half broadcast). "oltp": a pinger at site 1
// measuring round trips to site 2, and a committer at site 1 doing acked PERMANENT sends (quorum), acknowledged
// by the oltp receiver of every other site. Phases, fresh brokers each: oltp alone, bulk alone, oltp beside
// bulk, oltp beside bulk whose receiver at site 2 sleeps a fixed delay per message, and oltp beside as many
// processes as bulk has senders that only keep the cores busy (what the CPU alone does to oltp's latency on
// this machine). Reports oltp's RTT and commit percentiles, bulk's delivered messages per second and what it
// lost, and the ratios.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation

struct IsolationOptions {
    var sites: Int32 = 3
    var senders = 4
    var size = 100
    var seconds = 5.0
    var slowDelayMicroseconds: UInt32 = 100
    /// Passed to the brokers (--flow-window-bytes) when set.
    var flowWindowBytes: Int?
}

struct IsolationPhase: Codable {
    let phase: String
    let rtt: Latency?
    let commit: Latency?
    let bulkMessagesPerSecond: Double?
    let bulkExpected: Int?
    let bulkDropped: Int?
    enum CodingKeys: String, CodingKey {
        case phase, rtt, commit, bulkMessagesPerSecond = "bulk_msgs_per_s", bulkExpected = "bulk_expected"
        case bulkDropped = "bulk_dropped"
    }
}

enum IsolationBench {
    static let phases = ["oltp alone", "bulk alone", "oltp + bulk", "oltp + slow bulk", "oltp + busy cores"]

    static func measure(phase: String, _ options: IsolationOptions, log: (String) -> Void) throws -> IsolationPhase {
        let oltp = phase.hasPrefix("oltp")
        let bulk = phase.contains("bulk")
        let slow = phase.contains("slow")
        let busy = phase.contains("busy")
        let window = options.flowWindowBytes.map { ["--flow-window-bytes", "\($0)"] } ?? []
        let local = try LocalSites(count: Int(options.sites),
                                   extraArguments: ["--heartbeat-ms", "500", "--log-level", "error"] + window,
                                   program: .current("daemon"))
        var children: [ChildProcess] = []
        defer {
            for child in children { child.kill9() }
            local.shutDown()
        }
        try local.start()
        func spawn(_ name: String, _ site: Int32, _ arguments: [String]) throws -> ChildProcess {
            let child = try ChildProcess(
                name: name, executable: Executables.current,
                arguments: ["bench-worker"] + arguments + ["--mode", "shm", "--site", "\(site)", "--sites", "\(options.sites)",
                                                           "--socket", local.broker(site).socketPath],
                stderrPath: "/dev/null")
            children.append(child)
            return child
        }
        log("\(phase): \(options.sites) sites\(bulk ? ", \(options.senders) bulk senders each" : "")")
        if oltp {
            for site in 2...options.sites {
                let pong = try spawn("pong-\(site)", site, ["pong", "--group", "oltp"])
                guard pong.waitForLines(timeout: 20, { $0.contains("ready") }) else { throw HarnessError("\(phase): pong did not start") }
            }
        }
        var receivers: [ChildProcess] = []
        if bulk {
            for site in 1...options.sites {
                var arguments = ["receive", "--group", "bulk", "--ring-bytes", "\(1 << 20)"]
                if slow && site == 2 { arguments += ["--delay-us", "\(options.slowDelayMicroseconds)"] }
                receivers.append(try spawn("receive-\(site)", site, arguments))
            }
            for broker in local.brokers where !broker.waitForStats(timeout: 20, { $0.groups.contains { $0.name == "bulk" && $0.receiverClient != nil } }) {
                throw HarnessError("\(phase): site \(broker.siteID) has no bulk receiver")
            }
        }
        let started = Posix.monotonicNanoseconds()
        var senders: [ChildProcess] = []
        if bulk {
            for site in 1...options.sites {
                for index in 0..<options.senders {
                    senders.append(try spawn("send-\(site)-\(index)", site, [
                        "send", "--group", "bulk", "--size", "\(options.size)", "--seconds", "\(options.seconds)",
                        "--ring-bytes", "\(1 << 20)"]))
                }
            }
        }
        if busy {
            for index in 0..<(Int(options.sites) * options.senders) {
                _ = try spawn("spin-\(index)", 1, ["spin", "--seconds", "\(options.seconds)"])
            }
        }
        var ping: ChildProcess?
        var commit: ChildProcess?
        if oltp {
            ping = try spawn("ping", 1, ["ping", "--group", "oltp", "--to", "2", "--count", "200", "--seconds", "\(options.seconds)"])
            commit = try spawn("commit", 1, ["commit", "--count", "200", "--seconds", "\(options.seconds)"])
        }
        var expected = 0
        for sender in senders {
            expected += try MeshBench.expectedDeliveries(of: sender, sites: options.sites, timeout: options.seconds + 300,
                                                         what: phase)
        }
        let sendersDone = Posix.monotonicNanoseconds()
        var delivered = 0
        var lastChange = Posix.monotonicNanoseconds()
        if bulk {
            // Until every message arrived, or the count stopped moving for 3 s.
            _ = Deadline.wait(timeout: 300, interval: 0.1) {
                let now = receivers.map { MeshBench.received($0).messages }.reduce(0, +)
                if now != delivered { lastChange = Posix.monotonicNanoseconds() }
                delivered = now
                return now >= expected || Posix.monotonicNanoseconds() - lastChange > 3_000_000_000
            }
            if delivered < expected {
                for broker in local.brokers { if let stats = try? broker.stats() { Console.writeError(stats.table) } }
            }
        }
        let rtt = ping.flatMap { $0.waitForExit(timeout: options.seconds + 120) == 0 ? MeshBench.parseLatency($0.lines) : nil }
        let commitLatency = commit.flatMap { child -> Latency? in
            guard child.waitForExit(timeout: options.seconds + 120) == 0,
                  let line = child.lines.last(where: { $0.hasPrefix("commit_us ") }) else { return nil }
            let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
            guard values.count == 5 else { return nil }
            return Latency(p50: values[0], p99: values[1], p999: values[2], max: values[3], lost: Int(values[4]))
        }
        if oltp && (rtt == nil || commitLatency == nil) { throw HarnessError("\(phase): the oltp pinger or committer failed") }
        let elapsed = Double(max(lastChange, sendersDone) - started) / 1e9
        return IsolationPhase(phase: phase, rtt: rtt, commit: commitLatency,
                              bulkMessagesPerSecond: bulk ? Double(delivered) / elapsed : nil,
                              bulkExpected: bulk ? expected : nil, bulkDropped: bulk ? max(0, expected - delivered) : nil)
    }

    static func table(_ results: [IsolationPhase]) -> String {
        func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
        let widths = [18, 20, 24, 14, 9]
        func row(_ cells: [String]) -> String { zip(cells, widths).map { pad($0, $1) }.joined(separator: " ") + "\n" }
        var out = row(["phase", "oltp rtt p50/p99", "commit p50/p99 (failed)", "bulk msgs/s", "dropped"])
        for r in results {
            out += row([r.phase, r.rtt.map { String(format: "%.0f/%.0f us", $0.p50, $0.p99) } ?? "-",
                        r.commit.map { String(format: "%.0f/%.0f us (%d)", $0.p50, $0.p99, $0.lost) } ?? "-",
                        r.bulkMessagesPerSecond.map { String(format: "%.0f", $0) } ?? "-",
                        r.bulkDropped.map { "\($0)" } ?? "-"])
        }
        let alone = results.first { $0.phase == "oltp alone" }
        let bulkAlone = results.first { $0.phase == "bulk alone" }
        for r in results where r.phase.hasPrefix("oltp +") {
            var line = "\(r.phase) / alone:"
            if let a = alone?.rtt?.p99, let b = r.rtt?.p99 { line += String(format: " rtt p99 %.2fx,", b / max(a, 1)) }
            if let a = alone?.commit?.p99, let b = r.commit?.p99 { line += String(format: " commit p99 %.2fx,", b / max(a, 1)) }
            // The slowed phase's bulk is slow on purpose: only its losses (dropped) say something.
            if !r.phase.contains("slow"), let a = bulkAlone?.bulkMessagesPerSecond, let b = r.bulkMessagesPerSecond {
                line += String(format: " bulk throughput %.2fx", b / max(a, 1))
            }
            out += line + "\n"
        }
        return out
    }
}

extension BenchCommand {
    static func runIsolation(_ arguments: ParsedArguments) throws -> Int32 {
        var options = IsolationOptions()
        options.sites = try arguments.integer("sites", Int32.self, range: 3...16) ?? 3
        options.senders = try arguments.integer("senders", Int.self, range: 1...256) ?? 4
        options.size = try arguments.integer("size", Int.self, range: 1...(1 << 20)) ?? 100
        options.seconds = try arguments.seconds("seconds") ?? 5
        options.slowDelayMicroseconds = try arguments.integer("delay-us", UInt32.self, range: 1...1_000_000) ?? 100
        options.flowWindowBytes = try arguments.integer("flow-window-bytes", Int.self, range: BrokerConfig.flowWindowRange)
        let json = arguments.has("json")
        let results = try IsolationBench.phases.map { phase in
            try IsolationBench.measure(phase: phase, options) { if !json { Console.writeOutput($0 + "\n") } }
        }
        if json {
            struct Report: Codable {
                let benchmark: String, sites: Int32, senders: Int, size: Int, seconds: Double, delayMicroseconds: UInt32
                let phases: [IsolationPhase]
                enum CodingKeys: String, CodingKey {
                    case benchmark, sites, senders, size, seconds, delayMicroseconds = "slow_delay_us", phases
                }
            }
            Console.writeOutput(try jsonLine(Report(benchmark: "isolation", sites: options.sites, senders: options.senders,
                                                    size: options.size, seconds: options.seconds,
                                                    delayMicroseconds: options.slowDelayMicroseconds, phases: results)) + "\n")
        } else {
            Console.writeOutput(IsolationBench.table(results))
        }
        return 0
    }
}
