// The processes of `repbroker-bench mesh` and `bench isolation` (hidden subcommand `bench-worker`): senders,
// receivers, a pinger and ponger for latency, and a committer (acked PERMANENT sends), each over the broker
// (uds or shm clients) or over a direct TCP mesh (every sender connects to every other site's receiver;
// MESSAGE frames, one write per message). Workers print machine-readable lines on stdout for the orchestrator.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Synchronization

enum MeshWorker: Command {
    static let help = "USAGE: repbroker-bench bench-worker send|receive|ping|pong|commit|spin --mode direct|uds|shm --site N ... "
        + "(used by bench mesh and bench isolation)"
    static let valuedOptions: Set<String> = ["mode", "site", "sites", "size", "seconds", "count", "socket", "ports", "to",
                                             "group", "delay-us", "ring-bytes", "pattern"]
    static let flagNames: Set<String> = []

    struct Setup {
        let mode: String
        let site: Int32
        let sites: Int32
        let socket: String?
        let ports: [UInt16]
        /// The group of broker clients (each role has its default: "default" for send and receive, "ping" for
        /// ping and pong).
        let group: String?
        let ringBytes: Int

        init(_ arguments: ParsedArguments) throws {
            mode = arguments.last("mode") ?? "uds"
            guard ["direct", "uds", "shm"].contains(mode) else { throw UsageError("--mode must be direct, uds or shm") }
            site = try arguments.integer("site", Int32.self, range: 1...1000) ?? 1
            sites = try arguments.integer("sites", Int32.self, range: 2...1000) ?? 3
            socket = arguments.last("socket")
            ports = (arguments.last("ports") ?? "").split(separator: ",").compactMap { UInt16($0) }
            group = arguments.last("group")
            ringBytes = try arguments.integer("ring-bytes", Int.self, range: (64 << 10)...(64 << 20)) ?? 8 << 20
        }

        func client(roles: ClientRoles, group defaultGroup: String,
                    configure: (inout BrokerClientOptions) -> Void = { _ in }) throws -> BrokerClient {
            guard let socket else { throw UsageError("--socket is required in mode \(mode)") }
            let group = self.group ?? defaultGroup
            var options = BrokerClientOptions(socketPath: socket, group: group, name: "bench-\(group)", roles: roles)
            options.transport = mode == "shm" ? .sharedMemory : .unixSocket
            options.ringBytes = ringBytes
            // Senders wait as long as flow control holds them (a slow receiver at another site).
            options.sendTimeout = 600
            configure(&options)
            options.inboxLimitBytes = 256 << 20
            options.reconnect = false
            return try BrokerClient(options: options)
        }

        /// The receiver port of `site` in direct mode.
        func port(of site: Int32) throws -> UInt16 {
            guard Int(site) - 1 < ports.count else { throw UsageError("--ports lists no port for site \(site)") }
            return ports[Int(site) - 1]
        }
    }

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let setup = try Setup(arguments)
        switch arguments.positionals.first {
        case "send": return try send(setup, arguments)
        case "receive": return try receive(setup, delayMicroseconds: try arguments.integer("delay-us", UInt32.self, range: 0...1_000_000) ?? 0)
        case "ping": return try ping(setup, arguments)
        case "pong": return try pong(setup)
        case "commit": return try commit(setup, arguments)
        case "spin": return try spin(arguments)
        default: throw UsageError("bench-worker needs send, receive, ping, pong, commit or spin")
        }
    }

    // MARK: send

    static func send(_ setup: Setup, _ arguments: ParsedArguments) throws -> Int32 {
        let size = try arguments.integer("size", Int.self, range: 1...(1 << 20)) ?? 100
        let count = try arguments.integer("count", Int.self, range: 1...Int.max)
        let seconds = try arguments.seconds("seconds") ?? 10
        let others = (1...setup.sites).filter { $0 != setup.site }
        // mixed: every second message a broadcast; broadcast or unicast: all of one kind.
        let pattern = arguments.last("pattern") ?? "mixed"
        guard ["mixed", "broadcast", "unicast"].contains(pattern) else { throw UsageError("--pattern: mixed, broadcast or unicast") }
        let rec = [UInt8](repeating: 0x42, count: size)
        var unicast = 0
        var broadcast = 0
        let deadline = Posix.monotonicNanoseconds() + UInt64(seconds * 1e9)
        var direct: [Int32: DirectConnection] = [:]
        var client: BrokerClient?
        if setup.mode == "direct" {
            for site in others { direct[site] = try DirectConnection(port: try setup.port(of: site)) }
        } else {
            client = try setup.client(roles: [.sender], group: "default")
        }
        var sequence: UInt32 = 0
        try rec.withUnsafeBytes { recBytes in
            let empty = UnsafeRawBufferPointer(start: nil, count: 0)
            while count.map({ unicast + broadcast < $0 }) ?? true {
                if sequence % 256 == 0, count == nil, Posix.monotonicNanoseconds() >= deadline { break }
                sequence &+= 1
                let isBroadcast = pattern == "mixed" ? sequence % 2 == 0 : pattern == "broadcast"
                let target = others[Int(pattern == "mixed" ? sequence / 2 : sequence) % others.count]
                let lsn = LSN(file: UInt32(setup.site), offset: sequence)
                if let client {
                    try client.send(control: empty, rec: recBytes, lsn: lsn, to: isBroadcast ? SiteID.broadcast : target)
                } else {
                    let header = MessageHeader(source: setup.site, destination: isBroadcast ? SiteID.broadcast : target,
                                               lsn: lsn, controlLength: 0, recLength: UInt32(size))
                    for site in isBroadcast ? others : [target] { try direct[site]?.send(header, rec: recBytes) }
                }
                if isBroadcast { broadcast += 1 } else { unicast += 1 }
            }
        }
        client?.close()
        for connection in direct.values { connection.close() }
        Console.writeOutput("sent unicast=\(unicast) broadcast=\(broadcast)\n")
        return 0
    }

    // MARK: receive

    /// Prints `received MESSAGES BYTES` every 100 ms until killed; with a delay, sleeps that long per message
    /// (a slow receiver).
    static func receive(_ setup: Setup, delayMicroseconds: UInt32 = 0) throws -> Int32 {
        let messages = Atomic<Int>(0)
        let bytes = Atomic<Int>(0)
        if setup.mode == "direct" {
            let port = try setup.port(of: setup.site)
            let listener = try DirectListener.listen(port: port)
            startThread {
                DirectListener.serve(listener) { frame, _ in
                    if frame.type == .message {
                        messages.add(1, ordering: .relaxed)
                        bytes.add(frame.body.count - Wire.messageHeaderSize, ordering: .relaxed)
                    }
                }
            }
        } else {
            let client = try setup.client(roles: [.receiver], group: "default")
            startThread {
                while true {
                    _ = try? client.receiveAll(timeout: 1) { message in
                        if delayMicroseconds > 0 { usleep(delayMicroseconds) }
                        messages.add(1, ordering: .relaxed)
                        bytes.add(message.control.count + message.rec.count, ordering: .relaxed)
                    }
                }
            }
        }
        while true {
            Console.writeOutput("received \(messages.load(ordering: .relaxed)) \(bytes.load(ordering: .relaxed))\n")
            usleep(100_000)
        }
    }

    // MARK: latency

    /// Answers every ping at once (broker: group "ping"; direct: on the same connection), and acknowledges the
    /// LSN of every commit message (control `[2]`, from `bench-worker commit`) as durable.
    static func pong(_ setup: Setup) throws -> Int32 {
        if setup.mode == "direct" {
            DirectListener.serve(try DirectListener.listen(port: try setup.port(of: setup.site))) { frame, reply in
                guard frame.type == .message, let header = try? MessageHeader(body: frame.body) else { return }
                var back = header
                back.source = setup.site
                back.destination = header.source
                reply(back, MessageHeader.payload(of: frame.body, header).rec)
            }
        }
        let client = try setup.client(roles: [.sender, .receiver], group: "ping")
        Console.writeOutput("ready\n")
        while true {
            var replies: [(Int32, LSN)] = []
            var durable: [Int32: LSN] = [:]
            _ = try client.receiveAll(timeout: 1) { message in
                if message.control.count == 1 && message.control[0] == 2 {
                    durable[message.source] = max(durable[message.source] ?? .zero, message.lsn)
                } else {
                    replies.append((message.source, message.lsn))
                }
            }
            for (source, lsn) in durable { try client.acknowledge(lsn: lsn, to: source) }
            for (source, lsn) in replies { try client.send(control: [], rec: [1], lsn: lsn, to: source) }
        }
    }

    /// Sends `count` pings one at a time (or, with --seconds, as many as fit, at least `count`) and prints
    /// `rtt_us p50 p99 p999 max lost`.
    static func ping(_ setup: Setup, _ arguments: ParsedArguments) throws -> Int32 {
        var count = try arguments.integer("count", Int.self, range: 1...10_000_000) ?? 1000
        let until = try arguments.seconds("seconds").map { Posix.monotonicNanoseconds() + UInt64($0 * 1e9) }
        let to = try arguments.integer("to", Int32.self, range: 1...1000) ?? 2
        var rtts: [Double] = []
        var lost = 0
        if setup.mode == "direct" {
            let connection = try DirectConnection(port: try setup.port(of: to))
            for sequence in 0..<UInt32(count) {
                let header = MessageHeader(source: setup.site, destination: to, lsn: LSN(file: 0, offset: sequence),
                                           controlLength: 0, recLength: 1)
                let start = Posix.monotonicNanoseconds()
                try [UInt8(1)].withUnsafeBytes { try connection.send(header, rec: $0) }
                guard try connection.awaitMessage(lsnOffset: sequence, timeout: 1) else { lost += 1; continue }
                rtts.append(Double(Posix.monotonicNanoseconds() - start) / 1000)
            }
            connection.close()
        } else {
            let client = try setup.client(roles: [.sender, .receiver], group: "ping")
            var sequence: UInt32 = 0
            while Int(sequence) < count || until.map({ Posix.monotonicNanoseconds() < $0 }) == true {
                defer { sequence += 1 }
                if Int(sequence) >= count { count += 1 }
                let start = Posix.monotonicNanoseconds()
                try client.send(control: [], rec: [1], lsn: LSN(file: 0, offset: sequence), to: to)
                var answered = false
                while !answered, let message = try client.receive(timeout: 1) { answered = message.lsn.offset == sequence }
                if answered { rtts.append(Double(Posix.monotonicNanoseconds() - start) / 1000) } else { lost += 1 }
            }
            client.close()
        }
        rtts.sort()
        func percentile(_ p: Double) -> Double { rtts.percentile(p) ?? 0 }
        Console.writeOutput(String(format: "rtt_us %.1f %.1f %.1f %.1f %d\n", percentile(0.5), percentile(0.99),
                                   percentile(0.999), rtts.last ?? 0, lost))
        return 0
    }
}
