// The processes of `repbroker bench mesh` (hidden subcommand `bench-worker`): senders, receivers, and a
// pinger and ponger for latency, each over the broker (uds or shm clients) or over a direct TCP mesh (every
// sender connects to every other site's receiver; MESSAGE frames, one write per message). Workers print
// machine-readable lines on stdout for the orchestrator.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Synchronization

enum MeshWorker: Command {
    static let help = "USAGE: repbroker bench-worker send|receive|ping|pong --mode direct|uds|shm --site N ... (used by bench mesh)"
    static let valuedOptions: Set<String> = ["mode", "site", "sites", "size", "seconds", "count", "socket", "ports", "to"]
    static let flagNames: Set<String> = []

    struct Setup {
        let mode: String
        let site: Int32
        let sites: Int32
        let socket: String?
        let ports: [UInt16]

        init(_ arguments: ParsedArguments) throws {
            mode = arguments.last("mode") ?? "uds"
            guard ["direct", "uds", "shm"].contains(mode) else { throw UsageError("--mode must be direct, uds or shm") }
            site = try arguments.integer("site", Int32.self, range: 1...1000) ?? 1
            sites = try arguments.integer("sites", Int32.self, range: 2...1000) ?? 3
            socket = arguments.last("socket")
            ports = (arguments.last("ports") ?? "").split(separator: ",").compactMap { UInt16($0) }
        }

        func client(roles: ClientRoles, group: String) throws -> BrokerClient {
            guard let socket else { throw UsageError("--socket is required in mode \(mode)") }
            var options = BrokerClientOptions(socketPath: socket, group: group, name: "bench-\(group)", roles: roles)
            options.transport = mode == "shm" ? .sharedMemory : .unixSocket
            options.ringBytes = 8 << 20
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
        case "receive": return try receive(setup)
        case "ping": return try ping(setup, arguments)
        case "pong": return try pong(setup)
        default: throw UsageError("bench-worker needs send, receive, ping or pong")
        }
    }

    // MARK: send

    static func send(_ setup: Setup, _ arguments: ParsedArguments) throws -> Int32 {
        let size = try arguments.integer("size", Int.self, range: 1...(1 << 20)) ?? 100
        let count = try arguments.integer("count", Int.self, range: 1...Int.max)
        let seconds = try arguments.seconds("seconds") ?? 10
        let others = (1...setup.sites).filter { $0 != setup.site }
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
                let isBroadcast = sequence % 2 == 0
                let target = others[Int(sequence / 2) % others.count]
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

    /// Prints `received MESSAGES BYTES` every 100 ms until killed.
    static func receive(_ setup: Setup) throws -> Int32 {
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

    /// Answers every ping at once (broker: group "ping"; direct: on the same connection).
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
            _ = try client.receiveAll(timeout: 1) { replies.append(($0.source, $0.lsn)) }
            for (source, lsn) in replies { try client.send(control: [], rec: [1], lsn: lsn, to: source) }
        }
    }

    /// Sends `count` pings one at a time and prints `rtt_us p50 p99 p999 max lost`.
    static func ping(_ setup: Setup, _ arguments: ParsedArguments) throws -> Int32 {
        let count = try arguments.integer("count", Int.self, range: 1...10_000_000) ?? 1000
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
            for sequence in 0..<UInt32(count) {
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
