// repbroker demo: a working three-site group on loopback. Starts three repbrokerd processes, one
// receiver and two senders per site (unicast to the next site and broadcast), checks that every message
// arrived exactly once at the right site, prints each broker's stats, stops the brokers and cleans up.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient

enum DemoCommand: Command {
    static let help = """
        USAGE: repbroker demo [--messages N] [--keep]

        Starts a three-site group on loopback in a temporary directory (three brokers; per site one
        receiver and two senders), sends N messages per sender (default 1000; one sender unicasts to the
        next site, the other broadcasts), checks every message arrived once, prints each broker's stats and
        removes everything. Exit 0 when every message arrived.

        OPTIONS:
          --messages N  Messages per sender (default 1000).
          --keep        Leave the brokers' logs in the temporary directory.
        """
    static let valuedOptions: Set<String> = ["messages"]
    static let flagNames: Set<String> = ["keep"]
    static let sites: Int32 = 3

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let perSender = try arguments.integer("messages", Int.self, range: 1...10_000_000) ?? 1000
        let group = try LocalSites(count: Int(sites), program: .current("daemon"))
        defer {
            for broker in group.brokers { broker.terminate() }
            if arguments.has("keep") {
                Console.writeOutput("logs kept in \(group.directory.path)\n")
            } else {
                group.directory.remove()
            }
        }
        Console.writeOutput("starting \(sites) brokers on loopback in \(group.directory.path)\n")
        try group.start()
        for broker in group.brokers {
            Console.writeOutput("  site \(broker.siteID): 127.0.0.1:\(broker.port)  socket \(broker.socketPath)\n")
        }

        let receivers = try group.brokers.map { broker in
            try BrokerClient(options: BrokerClientOptions(socketPath: broker.socketPath, name: "demo-receiver",
                                                          roles: [.receiver]))
        }
        // Each site gets perSender unicasts from its predecessor and perSender broadcasts from each other site.
        let expected = perSender * Int(sites)
        let counts = DemoCounts(sites: Int(sites))
        let started = Posix.monotonicNanoseconds()
        for (index, receiver) in receivers.enumerated() {
            startThread {
                var got = 0
                while got < expected, let message = try? receiver.receive(timeout: 10) {
                    got += 1
                    counts.record(site: index, from: message.source)
                }
            }
        }
        for broker in group.brokers {
            let next = broker.siteID % sites + 1
            let payload = Array(repeating: UInt8(ascii: "x"), count: 100)
            for (name, destination) in [("demo-unicast", next), ("demo-broadcast", SiteID.broadcast)] {
                let sender = try BrokerClient(options: BrokerClientOptions(socketPath: broker.socketPath, name: name))
                for sequence in 0..<perSender {
                    let flags: RepFlags = sequence == perSender - 1 ? [.permanent] : []
                    try sender.send(control: [], rec: payload, lsn: LSN(file: 1, offset: UInt32(sequence)),
                                    to: destination, flags: flags)
                }
                sender.close()
            }
        }
        let complete = Deadline.wait(timeout: 30) { counts.total == expected * Int(sites) }
        let elapsed = Double(Posix.monotonicNanoseconds() - started) / 1e9
        Console.writeOutput("\n" + counts.summary(expected: expected) + "\n")
        for broker in group.brokers {
            Console.writeOutput("==== broker of site \(broker.siteID) ====\n")
            Console.writeOutput(try broker.stats().table + "\n")
        }
        for receiver in receivers { receiver.close() }
        let delivered = counts.total
        Console.writeOutput(String(format: "%d of %d messages delivered in %.2f s: %@\n", delivered,
                                   expected * Int(sites), elapsed, complete ? "OK" : "INCOMPLETE"))
        return complete ? 0 : 1
    }
}

/// Per-site counts of received messages by source, shared with the receiver threads.
final class DemoCounts: @unchecked Sendable {
    private let lock = ConditionLock()
    private var bySite: [[Int32: Int]]
    init(sites: Int) { bySite = Array(repeating: [:], count: sites) }

    func record(site: Int, from source: Int32) { lock.withLock { bySite[site][source, default: 0] += 1 } }
    var total: Int { lock.withLock { bySite.reduce(0) { $0 + $1.values.reduce(0, +) } } }

    func summary(expected: Int) -> String {
        lock.withLock {
            bySite.enumerated().map { index, sources in
                let parts = sources.keys.sorted().map { "from site \($0): \(sources[$0] ?? 0)" }.joined(separator: ", ")
                return "site \(index + 1) received \(sources.values.reduce(0, +)) of \(expected) (\(parts))"
            }.joined(separator: "\n")
        }
    }
}
