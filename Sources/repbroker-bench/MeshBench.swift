// repbroker-bench mesh: the broker against the direct per-process TCP mesh, same workload, same run.
// `sites` sites on loopback, each with `senders` sender processes and one receiver process; senders send
// half unicast (rotating over the other sites) and half broadcast for `seconds` (or `count` messages each).
// Delivered messages are counted by the receivers and checked against what the senders sent: what is
// missing is reported as dropped. Latency: a pinger at site 1 and a ponger at site 2, idle and under load.
// Cost: established TCP connections per host, broker RSS, CPU seconds per million delivered messages.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct MeshOptions {
    var sites: Int32 = 3
    var senders = 8
    var size = 100
    var seconds = 10.0
    var count: Int?
    var modes = ["direct", "uds", "shm"]
    /// Certificates for brokers' TLS links (bench mesh --tls); nil: plain links.
    var certificates: TestCertificates?
}

struct Latency: Codable {
    let p50: Double, p99: Double, p999: Double, max: Double, lost: Int
    enum CodingKeys: String, CodingKey { case p50 = "p50_us", p99 = "p99_us", p999 = "p999_us", max = "max_us", lost }
}

struct MeshResult: Codable {
    let mode: String
    let expected: Int
    let delivered: Int
    let dropped: Int
    let messagesPerSecond: Double
    let megabytesPerSecond: Double
    let rttIdle: Latency?
    let rttLoaded: Latency?
    let connectionsPerHost: Int
    let brokerRSSBytes: Int?
    let cpuSecondsPerMillion: Double
    /// Peer links that went down and came back during the run, over every broker (0 for direct).
    let linkResets: Int
    /// The brokers' peer links: "TLSv1.3 <cipher>", "plain", or nil (direct).
    let links: String?
    enum CodingKeys: String, CodingKey {
        case links
        case mode, expected, delivered, dropped, messagesPerSecond = "msgs_per_s", megabytesPerSecond = "mb_per_s"
        case linkResets = "link_resets"
        case rttIdle = "rtt_idle", rttLoaded = "rtt_loaded", connectionsPerHost = "tcp_connections_per_host"
        case brokerRSSBytes = "broker_rss_bytes", cpuSecondsPerMillion = "cpu_s_per_million_msgs"
    }
}

enum MeshBench {
    static func childCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    static func parseLatency(_ lines: [String]) -> Latency? {
        guard let line = lines.last(where: { $0.hasPrefix("rtt_us ") }) else { return nil }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count == 5 else { return nil }
        return Latency(p50: values[0], p99: values[1], p999: values[2], max: values[3], lost: Int(values[4]))
    }

    /// Waits for a `bench-worker send` process to end; the deliveries its `sent unicast=U broadcast=B` line
    /// promises: each unicast once, each broadcast at every other site.
    static func expectedDeliveries(of sender: ChildProcess, sites: Int32, timeout: Double, what: String) throws -> Int {
        guard sender.waitForExit(timeout: timeout) == 0 else { throw HarnessError("\(what): \(sender.name) failed") }
        _ = sender.waitForLines(timeout: 5) { $0.contains { $0.hasPrefix("sent ") } }
        let line = sender.lines.first { $0.hasPrefix("sent ") } ?? ""
        let numbers = line.split(separator: " ").compactMap { $0.split(separator: "=").last.flatMap { Int($0) } }
        guard numbers.count == 2 else { throw HarnessError("\(what): \(sender.name) printed no count") }
        return numbers[0] + numbers[1] * Int(sites - 1)
    }

    static func received(_ receiver: ChildProcess) -> (messages: Int, bytes: Int) {
        guard let line = receiver.lines.last(where: { $0.hasPrefix("received ") }) else { return (0, 0) }
        let values = line.split(separator: " ").dropFirst().compactMap { Int($0) }
        return values.count == 2 ? (values[0], values[1]) : (0, 0)
    }

    /// One measurement of `mode`; with `options.certificates`, the brokers' peer links are TLS.
    static func measure(mode: String, _ options: MeshOptions, log: (String) -> Void) throws -> MeshResult {
        let worker = Executables.current
        let cpuBefore = childCPUSeconds()
        let ports = (0..<options.sites).map { _ in FreePort.next() }
        let pongPorts = (0..<options.sites).map { _ in FreePort.next() }
        var sites: LocalSites?
        var children: [ChildProcess] = []
        defer {
            for child in children { child.kill9() }
            sites?.shutDown()
        }
        if mode != "direct" {
            let local = try LocalSites(count: Int(options.sites), extraArguments: ["--heartbeat-ms", "500", "--log-level", "error"],
                                   program: .current("daemon"))
            if let certificates = options.certificates {
                for broker in local.brokers { broker.extraArguments += certificates.brokerArguments("site\(broker.siteID)") }
            }
            sites = local
            try local.start()
        }
        func common(_ site: Int32, pong: Bool = false) -> [String] {
            var arguments = ["--mode", mode, "--site", "\(site)", "--sites", "\(options.sites)"]
            if let sites {
                arguments += ["--socket", sites.broker(site).socketPath]
            } else {
                arguments += ["--ports", (pong ? pongPorts : ports).map(String.init).joined(separator: ",")]
            }
            return arguments
        }
        func spawn(_ name: String, _ arguments: [String]) throws -> ChildProcess {
            let child = try ChildProcess(name: name, executable: worker, arguments: ["bench-worker"] + arguments,
                                         stderrPath: "/dev/null")
            children.append(child)
            return child
        }
        let receivers = try (1...options.sites).map { try spawn("receive-\($0)", ["receive"] + common($0)) }
        for receiver in receivers where !receiver.waitForLines(timeout: 20, { $0.contains { $0 == "ready" || $0.hasPrefix("received") } }) {
            throw HarnessError("\(mode): a receiver did not start")
        }
        if let sites {
            for broker in sites.brokers where !broker.waitForStats(timeout: 20, { $0.clients.contains { $0.roles == ["receiver"] } }) {
                throw HarnessError("\(mode): site \(broker.siteID) has no receiver")
            }
        }
        let pong = try spawn("pong", ["pong"] + common(2, pong: true))
        guard pong.waitForLines(timeout: 20, { $0.contains("ready") }) else { throw HarnessError("\(mode): pong did not start") }
        let idlePing = try spawn("ping-idle", ["ping", "--count", "500", "--to", "2"] + common(1, pong: true))
        _ = idlePing.waitForExit(timeout: 60)
        let rttIdle = parseLatency(idlePing.lines)

        let links = sites.flatMap { try? $0.broker(1).stats().peers.first?.tls }
        log("\(mode)\(links.map { " (\($0) links)" } ?? ""): \(options.sites) sites x \(options.senders) senders, "
            + "\(options.size)-byte messages")
        let started = Posix.monotonicNanoseconds()
        var senders: [(site: Int32, process: ChildProcess)] = []
        for site in 1...options.sites {
            for index in 0..<options.senders {
                var arguments = ["send", "--size", "\(options.size)"] + common(site)
                if let count = options.count { arguments += ["--count", "\(count)"] } else { arguments += ["--seconds", "\(options.seconds)"] }
                senders.append((site, try spawn("send-\(site)-\(index)", arguments)))
            }
        }
        let loadedPing = try spawn("ping-loaded", ["ping", "--count", "200", "--to", "2"] + common(1, pong: true))
        // Cost sampled while the load runs: halfway through a timed run.
        usleep(UInt32((options.count == nil ? options.seconds / 2 : 0.5) * 1e6))
        var connections = 0
        for site in 1...options.sites {
            var pids = senders.filter { $0.site == site }.map(\.process.pid) + [receivers[Int(site) - 1].pid]
            if let broker = sites?.broker(site).child?.pid { pids.append(broker) }
            connections = max(connections, ProcessStats.establishedConnections(of: pids))
        }
        var rss = sites?.brokers.compactMap { $0.child?.pid }.map(ProcessStats.residentBytes).max()

        var expected = 0
        for (_, sender) in senders {
            expected += try expectedDeliveries(of: sender, sites: options.sites, timeout: options.seconds + 120, what: mode)
        }
        let sendersDone = Posix.monotonicNanoseconds()
        // Delivered: until every message arrived, or the count stops moving for a second.
        var delivered = (0, 0)
        var lastChange = Posix.monotonicNanoseconds()
        _ = Deadline.wait(timeout: 60, interval: 0.1) {
            let now = receivers.map(received).reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
            if now.0 != delivered.0 { lastChange = Posix.monotonicNanoseconds() }
            delivered = now
            return now.0 >= expected || Posix.monotonicNanoseconds() - lastChange > 1_000_000_000
        }
        let elapsed = Double(max(lastChange, sendersDone) - started) / 1e9
        if delivered.0 < expected, let sites {
            // Missing messages: what each broker holds, for the report.
            for broker in sites.brokers { if let stats = try? broker.stats() { Console.writeError(stats.table) } }
        }
        _ = loadedPing.waitForExit(timeout: 120)
        let rttLoaded = parseLatency(loadedPing.lines)
        rss = max(rss ?? 0, sites?.brokers.compactMap { $0.child?.pid }.map(ProcessStats.residentBytes).max() ?? 0)
        let linkResets = sites?.brokers.compactMap { try? $0.stats() }.reduce(0) { total, stats in
            total + stats.peers.reduce(0) { $0 + $1.reconnects }
        } ?? 0
        for child in children { child.kill9() }
        children.removeAll()
        sites?.shutDown()
        sites = nil
        let cpu = childCPUSeconds() - cpuBefore
        return MeshResult(
            mode: mode, expected: expected, delivered: delivered.0, dropped: max(0, expected - delivered.0),
            messagesPerSecond: Double(delivered.0) / elapsed, megabytesPerSecond: Double(delivered.1) / elapsed / 1e6,
            rttIdle: rttIdle, rttLoaded: rttLoaded, connectionsPerHost: connections,
            brokerRSSBytes: mode == "direct" ? nil : rss, cpuSecondsPerMillion: cpu / max(Double(delivered.0), 1) * 1e6,
            linkResets: linkResets, links: links)
    }

    static func table(_ results: [MeshResult]) -> String {
        func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
        let widths = [7, 13, 9, 9, 19, 19, 9, 9, 11, 11]
        func row(_ cells: [String]) -> String { zip(cells, widths).map { pad($0, $1) }.joined(separator: " ") + "\n" }
        var out = row(["mode", "delivered/s", "MB/s", "dropped", "rtt idle p50/p99", "rtt load p50/p99", "tcp/host",
                       "rss MiB", "cpu s/M", "link resets"])
        for r in results {
            let idle = r.rttIdle.map { String(format: "%.0f/%.0f us", $0.p50, $0.p99) } ?? "-"
            let loaded = r.rttLoaded.map { String(format: "%.0f/%.0f us", $0.p50, $0.p99) } ?? "-"
            let rss = r.brokerRSSBytes.map { String(format: "%.1f", Double($0) / 1_048_576) } ?? "-"
            out += row([r.mode, String(format: "%.0f", r.messagesPerSecond), String(format: "%.1f", r.megabytesPerSecond),
                        "\(r.dropped)", idle, loaded, "\(r.connectionsPerHost)", rss, String(format: "%.2f", r.cpuSecondsPerMillion),
                        "\(r.linkResets)"])
        }
        if let direct = results.first(where: { $0.mode == "direct" }) {
            for r in results where r.mode != "direct" {
                out += "\(r.mode)/direct: throughput " + String(format: "%.2fx", r.messagesPerSecond / max(direct.messagesPerSecond, 1))
                    + ", idle rtt p50 " + String(format: "%.2fx", (r.rttIdle?.p50 ?? 0) / max(direct.rttIdle?.p50 ?? 1, 1))
                    + ", loaded rtt p50 " + String(format: "%.2fx", (r.rttLoaded?.p50 ?? 0) / max(direct.rttLoaded?.p50 ?? 1, 1))
                    + ", loaded rtt p99 " + String(format: "%.2fx", (r.rttLoaded?.p99 ?? 0) / max(direct.rttLoaded?.p99 ?? 1, 1)) + "\n"
            }
        }
        return out
    }
}
