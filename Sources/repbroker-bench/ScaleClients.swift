// repbroker-bench scale, clients and groups: one broker on loopback; its resident memory and descriptors with
// no client, then with N clients on the socket, N on shared-memory rings (64 KiB each way), and N clients
// spread over G groups against N in one group; and the time to open and register N clients one after
// another from one process. Memory is RssAnon + RssFile (the broker's own; rings are counted apart as
// RssShmem).
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient

struct ScaleClientsResult: Codable {
    let clients: Int
    let groups: Int
    let baseRSSBytes: Int
    let baseDescriptors: Int
    let socketRSSBytesPerThousand: Int
    let socketDescriptorsPerClient: Double
    let ringRSSBytesPerThousand: Int
    let ringSharedBytesPerThousand: Int
    let ringDescriptorsPerClient: Double
    let groupRSSBytesPerHundred: Int
    let registerSeconds: Double
    enum CodingKeys: String, CodingKey {
        case clients, groups, baseRSSBytes = "base_rss_bytes", baseDescriptors = "base_descriptors"
        case socketRSSBytesPerThousand = "socket_rss_bytes_per_1000", socketDescriptorsPerClient = "socket_descriptors_per_client"
        case ringRSSBytesPerThousand = "ring_rss_bytes_per_1000", ringSharedBytesPerThousand = "ring_shared_bytes_per_1000"
        case ringDescriptorsPerClient = "ring_descriptors_per_client", groupRSSBytesPerHundred = "group_rss_bytes_per_100"
        case registerSeconds = "register_s"
    }
}

enum ScaleClients {
    static func measure(clients count: Int, groups: Int, log: (String) -> Void) throws -> ScaleClientsResult {
        let sites = try LocalSites(count: 1, extraArguments: ["--log-level", "warning", "--max-clients", "\(count + 64)",
                                                              "--group-grace-ms", "600000"],
                                   program: .current("daemon"))
        defer { sites.shutDown() }
        try sites.start()
        let broker = sites.broker(1)
        guard let pid = broker.child?.pid else { throw HarnessError("the broker did not start") }
        func own() -> Int { let m = ProcessStats.residentMemory(pid); return m.anonymous + m.file }
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0 }
        func connect(_ n: Int, transport: ClientTransport, group: (Int) -> String) throws -> [BrokerClient] {
            try (0..<n).map { index in
                var options = BrokerClientOptions(socketPath: broker.socketPath, group: group(index), name: "scale")
                options.transport = transport
                options.ringBytes = 64 << 10
                return try BrokerClient(options: options)
            }
        }
        func settle(_ clients: Int) throws {
            guard broker.waitForStats(timeout: 60, { $0.clients.count == clients }) else {
                throw HarnessError("the broker did not show \(clients) clients")
            }
            Thread.sleep(forTimeInterval: 0.3)  // the broker's memory trim after departures runs on its timer
        }
        try settle(0)
        let baseRSS = own(), baseDescriptors = descriptors()

        let start = Posix.monotonicNanoseconds()
        var open = try connect(count, transport: .unixSocket) { _ in "default" }
        let registerSeconds = Double(Posix.monotonicNanoseconds() - start) / 1e9
        try settle(count)
        let socketRSS = own() - baseRSS, socketDescriptors = descriptors() - baseDescriptors
        log("\(count) socket clients: registered in \(String(format: "%.2f", registerSeconds)) s, "
            + "+\(socketRSS >> 10) KiB, +\(socketDescriptors) descriptors")
        open.forEach { $0.close() }
        try settle(0)

        let ringBase = own(), ringBaseDescriptors = descriptors(), sharedBase = ProcessStats.residentMemory(pid).shared
        open = try connect(count, transport: .sharedMemory) { _ in "default" }
        try settle(count)
        let ringRSS = own() - ringBase, ringDescriptors = descriptors() - ringBaseDescriptors
        let ringShared = ProcessStats.residentMemory(pid).shared - sharedBase
        log("\(count) ring clients: +\(ringRSS >> 10) KiB own, +\(ringShared >> 10) KiB rings, +\(ringDescriptors) descriptors")
        open.forEach { $0.close() }
        try settle(0)

        // The same clients in one group, then spread over `groups`: the difference is the groups' cost.
        let perGroup = max(1, groups)
        open = try connect(perGroup, transport: .unixSocket) { _ in "default" }
        try settle(perGroup)
        let oneGroup = own()
        open.forEach { $0.close() }
        try settle(0)
        open = try connect(perGroup, transport: .unixSocket) { "group-\($0)" }
        try settle(perGroup)
        let manyGroups = own()
        open.forEach { $0.close() }
        let groupRSS = (manyGroups - oneGroup) * 100 / perGroup
        log("\(groups) groups: +\(groupRSS >> 10) KiB per 100 groups")
        return ScaleClientsResult(
            clients: count, groups: groups, baseRSSBytes: baseRSS, baseDescriptors: baseDescriptors,
            socketRSSBytesPerThousand: socketRSS * 1000 / count, socketDescriptorsPerClient: Double(socketDescriptors) / Double(count),
            ringRSSBytesPerThousand: ringRSS * 1000 / count, ringSharedBytesPerThousand: ringShared * 1000 / count,
            ringDescriptorsPerClient: Double(ringDescriptors) / Double(count), groupRSSBytesPerHundred: groupRSS,
            registerSeconds: registerSeconds)
    }
}

/// `repbroker-bench scale`: both parts, a table or one JSON object.
enum ScaleCommand {
    struct Report: Codable {
        let sites: [ScaleSitesResult]
        let clients: ScaleClientsResult
    }

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let counts = try (arguments.last("sites") ?? "3,8,16").split(separator: ",").map { text throws(UsageError) -> Int in
            guard let count = Int(text), (2...64).contains(count) else { throw UsageError("--sites takes counts of 2 ... 64, as 3,8,16") }
            return count
        }
        let clients = try arguments.integer("clients", Int.self, range: 10...8192) ?? 1000
        let groups = try arguments.integer("groups", Int.self, range: 1...4096) ?? 100
        let seconds = try arguments.seconds("seconds") ?? 5
        let json = arguments.has("json")
        let log: (String) -> Void = { if !json { Console.writeError("scale: " + $0 + "\n") } }
        guard NetworkNamespaces.available else {
            Console.writeError("repbroker-bench scale: \(NetworkNamespaces.unavailableReason)\n")
            return 1
        }
        _ = Posix.raiseDescriptorLimit()
        let siteResults = try counts.map { try ScaleSites.measure(count: $0, loadSeconds: seconds, idleSeconds: 5, log: log) }
        let clientResult = try ScaleClients.measure(clients: clients, groups: groups, log: log)
        let report = Report(sites: siteResults, clients: clientResult)
        Console.writeOutput(json ? try jsonLine(report) + "\n" : table(report))
        return siteResults.contains { $0.dropped > 0 } ? 1 : 0
    }

    static func table(_ report: Report) -> String {
        func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
        let base = report.sites.first
        var rows = [["sites", "mesh s", "join s", "idle CPU %/broker", "RSS MiB/broker", "idle B/s/link", "kill seen s",
                     "return seen s", "bcast deliv/s", "bcast CPU s/M", "ucast deliv/s", "ucast CPU s/M", "dropped"]]
        for r in report.sites {
            rows.append(["\(r.sites)", f(r.meshSeconds, 3), f(r.joinSeconds, 3), f(r.idleCPUPercentPerBroker),
                         f(Double(r.rssBytesPerBroker) / 1_048_576, 1), f(r.idleBytesPerSecondPerLink, 0), f(r.downSeenSeconds, 3),
                         f(r.returnSeenSeconds, 3), f(r.broadcastDelivered, 0), f(r.broadcastCPUSecondsPerMillion),
                         f(r.unicastDelivered, 0), f(r.unicastCPUSecondsPerMillion), "\(r.dropped)"])
        }
        var out = render(rows)
        if let base {
            for r in report.sites.dropFirst() {
                out += "\(r.sites) sites / \(base.sites): links per broker \(f(Double(r.sites - 1) / Double(base.sites - 1)))x, "
                    + "idle CPU \(f(r.idleCPUPercentPerBroker / max(base.idleCPUPercentPerBroker, 0.0001)))x, "
                    + "RSS \(f(Double(r.rssBytesPerBroker) / Double(max(base.rssBytesPerBroker, 1))))x, "
                    + "broadcast CPU/M \(f(r.broadcastCPUSecondsPerMillion / max(base.broadcastCPUSecondsPerMillion, 0.0001)))x, "
                    + "unicast delivered \(f(r.unicastDelivered / max(base.unicastDelivered, 1)))x\n"
            }
        }
        let c = report.clients
        out += "\nclients on one broker (base: \(c.baseRSSBytes >> 20) MiB own memory, \(c.baseDescriptors) descriptors):\n"
        out += render([
            ["what", "own memory", "descriptors", "rings (shared)"],
            ["\(c.clients) socket clients, per 1000", "\(c.socketRSSBytesPerThousand >> 10) KiB",
             f(c.socketDescriptorsPerClient * 1000, 0), "-"],
            ["\(c.clients) ring clients (64 KiB rings), per 1000", "\(c.ringRSSBytesPerThousand >> 10) KiB",
             f(c.ringDescriptorsPerClient * 1000, 0), "\(c.ringSharedBytesPerThousand >> 10) KiB"],
            ["\(c.groups) groups, per 100", "\(c.groupRSSBytesPerHundred >> 10) KiB", "-", "-"],
        ])
        out += "register \(c.clients) clients one after another: \(f(c.registerSeconds)) s "
            + "(\(f(c.registerSeconds / Double(c.clients) * 1e6, 0)) us each)\n"
        return out
    }
}
