// `bench-worker commit` (bench isolation): acked PERMANENT sends one after another, as a Berkeley DB master's
// commits are. Each send is a broadcast with the next LSN and control `[2]`; the oltp ponger at every other
// site acknowledges it (durable), and the send returns once the ack policy (quorum) is met. Prints
// `commit_us p50 p99 p999 max failed`. `bench-worker spin` only keeps a core busy for --seconds (the CPU load
// of the bulk senders without their messages).
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import RepBrokerClient

extension MeshWorker {
    static func commit(_ setup: Setup, _ arguments: ParsedArguments) throws -> Int32 {
        let count = try arguments.integer("count", Int.self, range: 1...10_000_000) ?? 500
        let until = try arguments.seconds("seconds").map { Posix.monotonicNanoseconds() + UInt64($0 * 1e9) }
        let client = try setup.client(roles: [.sender], group: "oltp") { options in
            options.ackPolicy = .quorum
            options.ackTimeout = 5
        }
        var latencies: [Double] = []
        var failed = 0
        var offset: UInt32 = 0
        let record = [UInt8](repeating: 0x43, count: 200)
        while Int(offset) < count || until.map({ Posix.monotonicNanoseconds() < $0 }) == true {
            offset += 1
            let start = Posix.monotonicNanoseconds()
            do {
                try client.send(control: [2], rec: record, lsn: LSN(file: 1, offset: offset), to: SiteID.broadcast,
                                flags: .permanent)
                latencies.append(Double(Posix.monotonicNanoseconds() - start) / 1000)
            } catch {
                failed += 1
            }
        }
        client.close()
        latencies.sort()
        Console.writeOutput(String(format: "commit_us %.1f %.1f %.1f %.1f %d\n", latencies.percentile(0.5) ?? 0,
                                   latencies.percentile(0.99) ?? 0, latencies.percentile(0.999) ?? 0,
                                   latencies.last ?? 0, failed))
        return 0
    }

    static func spin(_ arguments: ParsedArguments) throws -> Int32 {
        let until = Posix.monotonicNanoseconds() + UInt64((try arguments.seconds("seconds") ?? 5) * 1e9)
        while Posix.monotonicNanoseconds() < until {}
        return 0
    }
}
