// repbroker-bench: measurements as programs, never as timed tests. Every figure is taken against its
// baseline in the same run (these machines are noisy).
//
// bench ipc: one sender client hands messages to a broker, which delivers them to one receiver client on
// the same host (sender -> broker -> receiver), over the Unix socket and over shared-memory rings in turn,
// for several rounds. Reports the median messages and bytes delivered per second of each transport
// (counted by the receiver; every message checked), the range, and the shm/uds ratio of the medians.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import CRelayReference
import Foundation
import RepBrokerClient

enum BenchCommand: Command {
    static let help = """
        USAGE: repbroker-bench ipc  [--size BYTES] [--seconds S] [--rounds N] [--json]
               repbroker-bench pingpong [--size 64] [--count 20000] [--idle-strategy spin|backoff|block|all]
                                    [--client-spin SECONDS] [--json]
               repbroker-bench idle [--clients 100] [--seconds 3] [--idle-strategy backoff|spin|block] [--json]
               repbroker-bench mesh [--sites 3] [--senders 8] [--size 100] [--seconds 10] [--count N]
                                    [--mode direct|uds|shm|all] [--tls [--rounds 3]] [--json]
               repbroker-bench isolation [--sites 3] [--senders 4] [--size 100] [--seconds 5] [--delay-us 100]
                                         [--flow-window-bytes N] [--json]
               repbroker-bench soak [--minutes 10] [--sample-seconds 10] [--clients 8] [--json]
               repbroker-bench scale [--sites 3,8,16] [--clients 1000] [--groups 100] [--seconds 5] [--json]

        scale: how cost grows. For each site count, brokers one per network namespace on a bridge (root and
        iproute2): the time from the last start to a full mesh, a joining site's time to a full mesh, each idle
        broker's CPU and RSS and the bytes per second a link carries idle (heartbeats, with TCP/IP headers), the
        time until every site sees a kill -9 of one, and its return after a restart; then one sender and one
        receiver per site (shared memory, 100-byte messages) all broadcast, then all unicast, for --seconds:
        delivered messages per second and the brokers' CPU seconds per million. Then one broker on loopback: own
        memory and descriptors per 1000 socket clients and per 1000 ring clients (64 KiB rings), per 100 groups,
        and the time to register --clients clients one after another. Ratios are against the smallest site count
        of the same run. Exit 1 if a message was not delivered.

        soak: three brokers for N minutes. Each site keeps a receiver and a channel server; besides them, --clients
        short-lived clients at all times, at random sites and on random transports, send messages and make channel
        requests, and one in four is killed with -9. A fourth site joins at a third of the run and site 3 is removed
        at two thirds. Every --sample-seconds it samples sites 1 and 2's brokers: resident memory, descriptors,
        threads and mappings. The baseline is taken after a warm-up (a fifth of the run, at most 10 minutes), with
        the churn paused, and the churn pauses again every minute for a quiesced sample. Passes when their own
        resident memory (RssAnon + RssFile: not the clients' shared rings) grows by less than 1% per 10 minutes
        over the quiesced samples (least squares) and their descriptors, threads and file and shared-memory mappings (clients' rings) are
        back at the baseline once the churn stops; anonymous mappings (the allocator's) are shown. Exit 1 when it
        does not pass.

        isolation: two groups on the same brokers (shared memory). bulk: `senders` processes per site sending as fast
        as they can; oltp: site 1 pings site 2 and does acked PERMANENT sends (quorum). Phases, fresh brokers each:
        oltp alone, bulk alone, oltp beside bulk, and oltp beside bulk whose receiver at site 2 sleeps --delay-us
        per message. Reports oltp's RTT and commit p50/p99, bulk's delivered msgs/s and dropped, and the ratios
        to the phases alone. --flow-window-bytes is passed to the brokers.

        mesh: `sites` sites on loopback, `senders` sender processes and one receiver process each; senders send
        half unicast (rotating) and half broadcast for S seconds (or N messages each). Mode direct: every
        sender connects by TCP to every other site's receiver; uds/shm: one broker per site, clients on that
        transport. Reports delivered messages and MB per second (dropped ones counted apart), RTT p50/p99
        idle and under load (site 1 pings site 2), TCP connections per host, broker RSS and CPU seconds per
        million delivered messages, and the broker/direct ratios. With --tls: the broker modes (default shm) over
        TLS 1.3 peer links and over plain ones, --rounds rounds each, alternating; the medians and TLS/plain ratios
        (throughput, idle RTT p50, CPU per delivered message). Certificates are made with the openssl tool; the
        host needs libssl3.

        pingpong: round trips on one site, pinger -> broker -> echo -> broker -> pinger over shared-memory rings,
        with the broker started with each idle strategy in turn (default all), and the same two threads over one
        TCP loopback connection with TCP_NODELAY as the baseline of the same run. Reports p50, p99 and p99.9 round
        trip, the ratio of each p50 to the direct one, and the broker's CPU while it ran. --client-spin sets the
        clients' spin before they sleep (default 0.00002; on two cores the pinger, the echo and a spinning
        broker share them).

        idle: a broker with N clients on shared-memory rings that send nothing; its CPU over S seconds, as a share of
        one core (default strategy backoff: well under 1%).

        ipc:
        Starts a broker and measures one client handing messages to it and the broker handing them to a
        receiver client, over each transport in turn for N rounds: the median msgs/s and MB/s delivered,
        the lowest and highest round, and shm/uds (ratio of the medians). Each round also runs the relay
        reference (three C processes, two shared-memory hops, no broker; sizes up to 64 KiB): its best round is
        the machine's capacity, and shm / relay best is printed beside it.
        Build with -c release for meaningful figures: swift run -c release repbroker-bench ipc

        OPTIONS:
          --size BYTES   rec bytes per message (default 64).
          --seconds S    Measuring time per transport and round (default 3).
          --rounds N     Rounds, alternating the transports (default 3).
          --json         One JSON object instead of the table (every round included).
        """
    static let valuedOptions: Set<String> = ["size", "seconds", "rounds", "sites", "senders", "count", "mode",
                                             "idle-strategy", "client-spin", "clients", "delay-us", "flow-window-bytes",
                                             "minutes", "sample-seconds", "groups"]
    static let flagNames: Set<String> = ["json", "tls"]

    /// One measurement: one transport, one round.
    struct Round: Codable {
        let messages: Int
        let seconds: Double
        let messagesPerSecond: Double
        enum CodingKeys: String, CodingKey { case messages, seconds, messagesPerSecond = "msgs_per_s" }
    }

    struct Row: Codable {
        let transport: String
        let messagesPerSecond: Double
        let megabytesPerSecond: Double
        let lowest: Double
        let highest: Double
        let rounds: [Round]
        enum CodingKeys: String, CodingKey {
            case transport, rounds, lowest = "msgs_per_s_lowest", highest = "msgs_per_s_highest",
                 messagesPerSecond = "msgs_per_s", megabytesPerSecond = "mb_per_s"
        }

        init(transport: String, size: Int, rounds: [Round]) {
            let rates = rounds.map(\.messagesPerSecond).sorted()
            let median = rates.median
            self.transport = transport
            messagesPerSecond = median
            megabytesPerSecond = median * Double(size) / 1e6
            lowest = rates.first ?? 0
            highest = rates.last ?? 0
            self.rounds = rounds
        }
    }

    struct Report: Codable {
        let benchmark: String
        let size: Int
        let rows: [Row]
        let shmOverUDS: Double
        /// The machine's capacity for two hops over shared memory: the best relay round.
        let relayBest: Double
        let shmOverRelayBest: Double
        enum CodingKeys: String, CodingKey {
            case benchmark, size, rows, shmOverUDS = "shm_over_uds", relayBest = "relay_best_msgs_per_s",
                 shmOverRelayBest = "shm_over_relay_best"
        }
    }

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        if arguments.positionals == ["mesh"] { return try runMesh(arguments) }
        if arguments.positionals == ["pingpong"] { return try runPingPong(arguments) }
        if arguments.positionals == ["idle"] { return try runIdle(arguments) }
        if arguments.positionals == ["isolation"] { return try runIsolation(arguments) }
        if arguments.positionals == ["soak"] { return try runSoak(arguments) }
        if arguments.positionals == ["scale"] { return try ScaleCommand.run(arguments) }
        guard arguments.positionals == ["ipc"] else {
            throw UsageError("bench takes one benchmark: ipc, pingpong, idle, mesh, isolation or soak")
        }
        let size = try arguments.integer("size", Int.self, range: 1...(16 << 20)) ?? 64
        let seconds = try arguments.seconds("seconds") ?? 3
        let roundCount = try arguments.integer("rounds", Int.self, range: 1...100) ?? 3
        let sites = try LocalSites(count: 1, extraArguments: ["--log-level", "warning", "--client-queue-bytes", "268435456"],
                                   program: .current("daemon"))
        defer { sites.shutDown() }
        try sites.start()
        let broker = sites.broker(1)
        let transports = [ClientTransport.unixSocket, .sharedMemory]
        var rounds: [[Round]] = transports.map { _ in [] }
        var relayRounds: [Round] = []
        for _ in 0..<roundCount {
            for (index, transport) in transports.enumerated() {
                rounds[index].append(try measure(broker, transport: transport, size: size, seconds: seconds))
            }
            // The relay reference, in the same minute: its best round is the machine's capacity.
            let rate = size <= 1 << 16 ? rb_relay_reference(CInt(size), seconds) : -1
            if rate > 0 { relayRounds.append(Round(messages: Int(rate * seconds), seconds: seconds, messagesPerSecond: rate)) }
        }
        var rows = zip(transports, rounds).map { Row(transport: $0.rawValue, size: size, rounds: $1) }
        let relayBest = relayRounds.map(\.messagesPerSecond).max() ?? 0
        if !relayRounds.isEmpty { rows.append(Row(transport: "relay", size: size, rounds: relayRounds)) }
        let ratio = rows[1].messagesPerSecond / max(rows[0].messagesPerSecond, 1)
        let report = Report(benchmark: "ipc", size: size, rows: rows, shmOverUDS: ratio, relayBest: relayBest,
                            shmOverRelayBest: relayBest > 0 ? rows[1].messagesPerSecond / relayBest : 0)
        if arguments.has("json") {
            Console.writeOutput(try jsonLine(report) + "\n")
        } else {
            Console.writeOutput("ipc: sender -> broker -> receiver on one host, \(size)-byte messages, median of \(roundCount) "
                + "round\(roundCount == 1 ? "" : "s") of \(seconds) s\n")
            Console.writeOutput(pad("transport", 11) + pad("msgs/s", 13) + pad("MB/s", 10) + "rounds: lowest - highest msgs/s\n")
            for row in rows {
                Console.writeOutput(pad(row.transport, 11) + pad(String(format: "%.0f", row.messagesPerSecond), 13)
                    + pad(String(format: "%.1f", row.megabytesPerSecond), 10)
                    + String(format: "%.0f - %.0f", row.lowest, row.highest) + "\n")
            }
            Console.writeOutput(String(format: "shm/uds: %.2fx\n", ratio))
            if relayBest > 0 {
                Console.writeOutput(String(format: "relay (C, no broker: producer -> ring -> relay -> ring -> consumer) best "
                    + "round: %.0f msgs/s; shm / relay best: %.2fx\n", relayBest, report.shmOverRelayBest))
            }
        }
        return 0
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }

    static func runMesh(_ arguments: ParsedArguments) throws -> Int32 {
        var options = MeshOptions()
        options.sites = try arguments.integer("sites", Int32.self, range: 2...16) ?? 3
        options.senders = try arguments.integer("senders", Int.self, range: 1...256) ?? 8
        options.size = try arguments.integer("size", Int.self, range: 1...(1 << 20)) ?? 100
        options.seconds = try arguments.seconds("seconds") ?? 10
        options.count = try arguments.integer("count", Int.self, range: 1...Int.max)
        switch arguments.last("mode") ?? "all" {
        case "all": options.modes = ["direct", "uds", "shm"]
        case let mode where ["direct", "uds", "shm"].contains(mode): options.modes = [mode]
        case let other: throw UsageError("--mode must be direct, uds, shm or all, not '\(other)'")
        }
        let json = arguments.has("json")
        if arguments.has("tls") {
            if arguments.last("mode") == nil { options.modes = ["shm"] }
            let rounds = try arguments.integer("rounds", Int.self, range: 1...100) ?? 3
            let (results, comparisons) = try MeshTLSBench.run(options, rounds: rounds) { if !json { Console.writeOutput($0 + "\n") } }
            if json {
                struct Report: Codable {
                    let benchmark: String, sites: Int32, senders: Int, size: Int, seconds: Double, results: [MeshResult]
                    let comparisons: [MeshTLSComparison]
                }
                Console.writeOutput(try jsonLine(Report(benchmark: "mesh-tls", sites: options.sites, senders: options.senders,
                                                        size: options.size, seconds: options.seconds, results: results,
                                                        comparisons: comparisons)) + "\n")
            } else {
                Console.writeOutput(MeshTLSBench.table(results, comparisons))
            }
            return 0
        }
        let results = try options.modes.map { mode in
            try MeshBench.measure(mode: mode, options) { if !json { Console.writeOutput($0 + "\n") } }
        }
        if json {
            struct Report: Codable {
                let benchmark: String, sites: Int32, senders: Int, size: Int, seconds: Double, results: [MeshResult]
            }
            Console.writeOutput(try jsonLine(Report(benchmark: "mesh", sites: options.sites, senders: options.senders,
                                                    size: options.size, seconds: options.seconds, results: results)) + "\n")
        } else {
            Console.writeOutput(MeshBench.table(results))
        }
        return 0
    }

    static func runSoak(_ arguments: ParsedArguments) throws -> Int32 {
        let minutes = (try arguments.seconds("minutes")) ?? 10
        let sampleSeconds = try arguments.seconds("sample-seconds") ?? 10
        let clients = try arguments.integer("clients", Int.self, range: 1...256) ?? 8
        let json = arguments.has("json")
        let result = try SoakBench(minutes: minutes, sampleSeconds: sampleSeconds, concurrency: clients) { line in
            if !json { Console.writeOutput(line + "\n") }
        }.run()
        if json {
            Console.writeOutput(try jsonLine(result) + "\n")
        } else {
            Console.writeOutput(String(format: "\n%.1f minutes: %d clients started, %d killed with -9, %d messages sent, "
                + "%d channel replies\n", result.minutes, result.clientsStarted, result.clientsKilled, result.messagesSent,
                result.replies))
            Console.writeOutput("broker   own start  own end    own %/10 min  rss %/10 min  fds      threads  file maps  "
                + "anon maps  back to baseline\n")
            for broker in result.brokers {
                let columns = [
                    "site \(broker.site)", "\(broker.baseline.ownBytes >> 10) KiB", "\(broker.end.ownBytes >> 10) KiB",
                    String(format: "%+.3f%%", broker.ownPercentPer10Minutes),
                    String(format: "%+.3f%%", broker.rssPercentPer10Minutes),
                    "\(broker.baseline.descriptors)->\(broker.end.descriptors)", "\(broker.baseline.threads)->\(broker.end.threads)",
                    "\(broker.baseline.fileMappings)->\(broker.end.fileMappings)",
                    "\(broker.baseline.mappings - broker.baseline.fileMappings)->\(broker.end.mappings - broker.end.fileMappings)",
                    broker.returnedToBaseline ? "yes" : "NO",
                ]
                let widths = [9, 11, 11, 14, 14, 9, 9, 11, 11, 0]
                Console.writeOutput(zip(columns, widths).map { $1 == 0 ? $0 : $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
                    .joined() + "\n")
            }
            Console.writeOutput(result.passed ? "PASS: the brokers' own resident memory grows by less than 1% per 10 minutes; descriptors, "
                + "threads and file and shared-memory mappings returned to their baseline\n" : "FAIL: see the table\n")
        }
        return result.passed ? 0 : 1
    }

    static func runIdle(_ arguments: ParsedArguments) throws -> Int32 {
        let count = try arguments.integer("clients", Int.self, range: 1...4096) ?? 100
        let seconds = try arguments.seconds("seconds") ?? 3
        let name = arguments.last("idle-strategy") ?? "backoff"
        guard let strategy = IdleStrategyKind(rawValue: name) else {
            throw UsageError("--idle-strategy must be backoff, spin or block, not '\(name)'")
        }
        let result = try IdleBench.measure(clients: count, strategy: strategy, seconds: seconds)
        if arguments.has("json") {
            Console.writeOutput(try jsonLine(result) + "\n")
        } else {
            Console.writeOutput(String(format: "idle broker, %d ring clients, --idle-strategy %@: %.2f%% of a core over %.1f s\n",
                                       result.clients, result.idleStrategy, result.cpuPercent, result.seconds))
        }
        return 0
    }

    static func runPingPong(_ arguments: ParsedArguments) throws -> Int32 {
        let size = try arguments.integer("size", Int.self, range: 1...(1 << 20)) ?? 64
        let count = try arguments.integer("count", Int.self, range: 1...10_000_000) ?? 20_000
        let clientSpin = try arguments.seconds("client-spin") ?? 0.000_02
        let strategies: [IdleStrategyKind]
        switch arguments.last("idle-strategy") ?? "all" {
        case "all": strategies = [.spin, .backoff, .block]
        case let name:
            guard let kind = IdleStrategyKind(rawValue: name) else {
                throw UsageError("--idle-strategy must be spin, backoff, block or all, not '\(name)'")
            }
            strategies = [kind]
        }
        let results = try strategies.map { try PingPongBench.measureBroker(strategy: $0, size: size, count: count, clientSpin: clientSpin) }
        let direct = try PingPongBench.measureDirect(size: size, count: count)
        if arguments.has("json") {
            struct Report: Codable { let benchmark: String, size: Int, results: [PingPongResult], direct: PingPongResult }
            Console.writeOutput(try jsonLine(Report(benchmark: "pingpong", size: size, results: results, direct: direct)) + "\n")
        } else {
            Console.writeOutput("pingpong: round trips on one site, \(size)-byte messages, \(count) timed after 1000 to warm up\n")
            Console.writeOutput(PingPongBench.table(results, direct: direct))
        }
        return 0
    }

    static func measure(_ broker: BrokerProcess, transport: ClientTransport, size: Int, seconds: Double) throws -> Round {
        var receiverOptions = BrokerClientOptions(socketPath: broker.socketPath, name: "bench-receiver", roles: [.receiver])
        receiverOptions.transport = transport
        receiverOptions.ringBytes = 16 << 20
        receiverOptions.inboxLimitBytes = 256 << 20
        let receiver = try BrokerClient(options: receiverOptions)
        defer { receiver.close() }
        var senderOptions = BrokerClientOptions(socketPath: broker.socketPath, name: "bench-sender")
        senderOptions.transport = transport
        senderOptions.ringBytes = 16 << 20
        let sender = try BrokerClient(options: senderOptions)
        defer { sender.close() }
        let site = sender.siteID
        let stop = BenchFlag()
        startThread {
            let rec = [UInt8](repeating: 0x5A, count: size)
            var count = 0
            var sequence: UInt32 = 0
            rec.withUnsafeBytes { recBytes in
                let empty = UnsafeRawBufferPointer(start: nil, count: 0)
                while !stop.isSet {
                    for _ in 0..<256 {
                        sequence &+= 1
                        do {
                            try sender.send(control: empty, rec: recBytes, lsn: LSN(file: 1, offset: sequence), to: site)
                        } catch { return }
                        count += 1
                    }
                }
            }
            stop.finish()
        }
        var received = 0
        var expected: UInt32 = 1
        var outOfOrder = 0
        let start = Posix.monotonicNanoseconds()
        let end = start + UInt64(seconds * 1e9)
        while Posix.monotonicNanoseconds() < end {
            let count = try receiver.receiveAll(timeout: 1) { message in
                if message.lsn.offset != expected || message.rec.count != size { outOfOrder += 1 }
                expected = message.lsn.offset &+ 1
            }
            if count == 0 { break }
            received += count
        }
        let elapsed = Double(Posix.monotonicNanoseconds() - start) / 1e9
        stop.set()
        stop.waitFinished()
        // Drain what is still in flight so the next transport starts clean.
        while ((try? receiver.receiveAll(timeout: 0.5) { _ in }) ?? 0) > 0 {}
        guard outOfOrder == 0 else { throw HarnessError("\(transport.rawValue): \(outOfOrder) messages lost or out of order") }
        return Round(messages: received, seconds: elapsed, messagesPerSecond: Double(received) / elapsed)
    }
}

final class BenchFlag: @unchecked Sendable {
    private let lock = ConditionLock()
    private var stopped = false
    private var finished = false
    var isSet: Bool { lock.withLock { stopped } }
    func set() { lock.withLock { stopped = true } }
    func finish() { lock.withLock { finished = true; lock.broadcast() } }
    func waitFinished() { lock.withLock { while !finished { lock.wait(untilNanoseconds: nil) } } }
}
