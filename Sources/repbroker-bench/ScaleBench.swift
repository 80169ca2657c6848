// repbroker-bench scale: how a broker's cost grows with the sites of the group. For each site count, the
// brokers run one per network namespace on a bridge (as on separate hosts; root and iproute2), started
// together with static peer lists. Measured: the time from the last start to a full mesh; a joining site's
// time from its start (--join through site 1) to a full mesh; each idle broker's CPU and RSS, and the bytes per
// second each link carries idle (heartbeat probes and echoes, with TCP/IP headers: eth0's counters); after a
// kill -9 of one site, the time until every other site shows it down, and after its restart until every site
// shows it up; and under load (one sender and one receiver per site, shared-memory rings, 100-byte messages,
// all broadcast, then all unicast) the messages delivered per second and the brokers' CPU per million.
// Clients and groups are measured on one broker (ScaleClients.swift).
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct ScaleSitesResult: Codable {
    let sites: Int
    let meshSeconds: Double
    let joinSeconds: Double
    let idleCPUPercentPerBroker: Double
    let rssBytesPerBroker: Int
    let idleBytesPerSecondPerLink: Double
    let downSeenSeconds: Double
    let returnSeenSeconds: Double
    let broadcastDelivered: Double
    let broadcastCPUSecondsPerMillion: Double
    let unicastDelivered: Double
    let unicastCPUSecondsPerMillion: Double
    let dropped: Int
    enum CodingKeys: String, CodingKey {
        case sites, dropped
        case meshSeconds = "mesh_s", joinSeconds = "join_s", idleCPUPercentPerBroker = "idle_cpu_percent_per_broker"
        case rssBytesPerBroker = "rss_bytes_per_broker", idleBytesPerSecondPerLink = "idle_bytes_per_s_per_link"
        case downSeenSeconds = "down_seen_s", returnSeenSeconds = "return_seen_s"
        case broadcastDelivered = "broadcast_delivered_per_s", broadcastCPUSecondsPerMillion = "broadcast_broker_cpu_s_per_million"
        case unicastDelivered = "unicast_delivered_per_s", unicastCPUSecondsPerMillion = "unicast_broker_cpu_s_per_million"
    }
}

enum ScaleSites {
    static let port: UInt16 = 7001

    /// Brokers of `count` sites (and one more that joins), each in its namespace.
    static func measure(count: Int, loadSeconds: Double, idleSeconds: Double, log: (String) -> Void) throws -> ScaleSitesResult {
        let ids = (1...Int32(count + 1)).map { $0 }
        let directory = try TemporaryDirectory(prefix: "rbscale")
        let hosts: NetworkNamespaces
        do { hosts = try NetworkNamespaces(sites: ids) } catch {
            directory.remove()
            throw error
        }
        var brokers: [Int32: BrokerProcess] = [:]
        defer {
            for broker in brokers.values { broker.terminate() }
            hosts.remove()
            directory.remove()
        }
        func make(_ id: Int32, peers: [Int32], join: Int32? = nil) -> BrokerProcess {
            let broker = BrokerProcess(
                siteID: id, port: port, directory: directory.path, peers: peers.map { ($0, port) },
                extraArguments: ["--insecure", "--log-level", "warning"] + (join.map { ["--join", "\(hosts.address($0)):\(port)"] } ?? []),
                program: hosts.program(.current("daemon"), in: id))
            broker.listenAddress = "\(hosts.address(id)):\(port)"
            broker.peerHost = { [hosts] in hosts.address($0) }
            brokers[id] = broker
            return broker
        }
        func linked(_ ids: [Int32]) -> Bool {
            ids.allSatisfy { id in
                guard let stats = try? brokers[id]?.stats() else { return false }
                return stats.peers.filter { $0.state == .connected }.count == ids.count - 1
            }
        }
        func waitUntil(_ what: String, timeout: Double = 60, _ condition: () -> Bool) throws -> Double {
            let start = Posix.monotonicNanoseconds()
            guard Deadline.wait(timeout: timeout, interval: 0.005, condition) else {
                throw HarnessError("\(count) sites: \(what) not within \(timeout) s")
            }
            return Double(Posix.monotonicNanoseconds() - start) / 1e9
        }
        let members = Array(ids.prefix(count))
        for id in members { try make(id, peers: members.filter { $0 != id }).start() }
        let meshSeconds = try waitUntil("a full mesh") { linked(members) }
        log("\(count) sites: full mesh \(String(format: "%.3f", meshSeconds)) s after the last start")

        let joiner = ids.last!
        let joinStart = Posix.monotonicNanoseconds()
        try make(joiner, peers: [], join: 1).start()
        _ = try waitUntil("the joining site linked everywhere") { linked(ids) }
        let joinSeconds = Double(Posix.monotonicNanoseconds() - joinStart) / 1e9
        // The joiner leaves the group for good (removed through site 1), so the rest runs on `count` sites.
        brokers[joiner]?.terminate()
        brokers[joiner] = nil
        _ = try AdminClient.query("remove-site \(joiner)", adminSocket: brokers[1]!.adminSocketPath)
        _ = try waitUntil("the joined site removed everywhere") {
            members.allSatisfy { id in (try? brokers[id]?.stats())?.peers.contains { $0.siteID == joiner } == false }
        }

        // Idle: CPU, RSS, and the bytes each link carries (eth0 of every member's namespace).
        let pids = members.compactMap { brokers[$0]?.child?.pid }
        let cpuBefore = pids.map(ProcessStats.cpuSeconds).reduce(0, +)
        let bytesBefore = pids.map(transmittedBytes).reduce(0, +)
        let idleStart = Posix.monotonicNanoseconds()
        Thread.sleep(forTimeInterval: idleSeconds)  // the measured interval: nothing is sent by design
        let idleWall = Double(Posix.monotonicNanoseconds() - idleStart) / 1e9
        let cpuPercent = (pids.map(ProcessStats.cpuSeconds).reduce(0, +) - cpuBefore) / idleWall / Double(count) * 100
        let links = Double(count * (count - 1))  // directed: each broker sends on each of its links
        let bytesPerLink = Double(pids.map(transmittedBytes).reduce(0, +) - bytesBefore) / idleWall / links
        let rss = pids.map(ProcessStats.residentBytes).reduce(0, +) / count

        // A kill -9 of the last member, seen down everywhere, then its restart seen up everywhere.
        let victim = members.last!
        let others = members.filter { $0 != victim }
        brokers[victim]?.kill9()
        let downSeen = try waitUntil("site \(victim) seen down") {
            others.allSatisfy { id in (try? brokers[id]?.stats())?.peers.first { $0.siteID == victim }?.state != .connected }
        }
        _ = brokers[victim]?.child?.waitForExit(timeout: 10)
        let restart = Posix.monotonicNanoseconds()
        try brokers[victim]?.start()
        _ = try waitUntil("site \(victim) seen up again") { linked(members) }
        let returnSeen = Double(Posix.monotonicNanoseconds() - restart) / 1e9
        log("\(count) sites: idle \(String(format: "%.2f", cpuPercent))% CPU, \(rss >> 20) MiB per broker, "
            + "\(Int(bytesPerLink)) B/s per link; kill -9 seen in \(String(format: "%.3f", downSeen)) s, "
            + "return in \(String(format: "%.3f", returnSeen)) s")

        let broadcast = try load(members, brokers: brokers, pattern: "broadcast", seconds: loadSeconds)
        let unicast = try load(members, brokers: brokers, pattern: "unicast", seconds: loadSeconds)
        log("\(count) sites: broadcast \(Int(broadcast.rate)) delivered/s (\(String(format: "%.2f", broadcast.cpu)) broker CPU s/M), "
            + "unicast \(Int(unicast.rate)) (\(String(format: "%.2f", unicast.cpu)))")
        return ScaleSitesResult(
            sites: count, meshSeconds: meshSeconds, joinSeconds: joinSeconds, idleCPUPercentPerBroker: cpuPercent,
            rssBytesPerBroker: rss, idleBytesPerSecondPerLink: bytesPerLink, downSeenSeconds: downSeen,
            returnSeenSeconds: returnSeen, broadcastDelivered: broadcast.rate, broadcastCPUSecondsPerMillion: broadcast.cpu,
            unicastDelivered: unicast.rate, unicastCPUSecondsPerMillion: unicast.cpu, dropped: broadcast.dropped + unicast.dropped)
    }

    /// eth0's transmitted bytes in the namespace of `pid` (/proc/PID/net/dev).
    static func transmittedBytes(_ pid: Int32) -> Int {
        guard let text = ProcessStats.read("/proc/\(pid)/net/dev") else { return 0 }
        for line in text.split(separator: "\n") where line.trimmingCharacters(in: .whitespaces).hasPrefix("eth0:") {
            let fields = line.split(separator: ":")[1].split(separator: " ")
            return fields.count > 8 ? Int(fields[8]) ?? 0 : 0
        }
        return 0
    }

    /// One sender and one receiver per site for `seconds`: delivered per second, the brokers' CPU per million.
    static func load(_ members: [Int32], brokers: [Int32: BrokerProcess], pattern: String, seconds: Double) throws
        -> (rate: Double, cpu: Double, dropped: Int) {
        let worker = Executables.current
        var children: [ChildProcess] = []
        defer { for child in children { child.kill9() } }
        func spawn(_ site: Int32, _ role: [String]) throws -> ChildProcess {
            let child = try ChildProcess(
                name: "\(role[0])-\(site)", executable: worker,
                arguments: ["bench-worker"] + role + ["--mode", "shm", "--site", "\(site)", "--sites", "\(members.count)",
                                                      "--socket", brokers[site]!.socketPath],
                stderrPath: "/dev/null")
            children.append(child)
            return child
        }
        let receivers = try members.map { try spawn($0, ["receive"]) }
        for (site, receiver) in zip(members, receivers) where !receiver.waitForLines(timeout: 20, { $0.contains { $0 == "ready" || $0.hasPrefix("received") } })
            || !brokers[site]!.waitForStats(timeout: 20, { $0.groups.contains { $0.receiverClient != nil } }) {
            throw HarnessError("site \(site): the receiver did not start")
        }
        let pids = members.compactMap { brokers[$0]?.child?.pid }
        let cpuBefore = pids.map(ProcessStats.cpuSeconds).reduce(0, +)
        let started = Posix.monotonicNanoseconds()
        let senders = try members.map { try spawn($0, ["send", "--pattern", pattern, "--size", "100", "--seconds", "\(seconds)"]) }
        var expected = 0
        for sender in senders {
            expected += try MeshBench.expectedDeliveries(of: sender, sites: Int32(members.count), timeout: seconds + 120, what: pattern)
        }
        let sendersDone = Posix.monotonicNanoseconds()
        var delivered = 0
        var lastChange = Posix.monotonicNanoseconds()
        _ = Deadline.wait(timeout: 60, interval: 0.05) {
            let now = receivers.map { MeshBench.received($0).messages }.reduce(0, +)
            if now != delivered { lastChange = Posix.monotonicNanoseconds() }
            delivered = now
            return now >= expected || Posix.monotonicNanoseconds() - lastChange > 1_000_000_000
        }
        let elapsed = Double(max(min(lastChange, Posix.monotonicNanoseconds()), sendersDone) - started) / 1e9
        let cpu = pids.map(ProcessStats.cpuSeconds).reduce(0, +) - cpuBefore
        return (Double(delivered) / elapsed, cpu / max(Double(delivered), 1) * 1e6, max(0, expected - delivered))
    }
}
