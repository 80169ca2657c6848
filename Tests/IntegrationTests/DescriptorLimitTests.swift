// A broker out of descriptors: it backs off instead of spinning on its listener, logs once per backoff
// period, counts accept failures, keeps its admin socket and peer links served, and accepts again once
// descriptors are free. --max-clients refuses a client over it with a reason.
@testable import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// repbrokerd under `ulimit -n limit` (soft and hard: the broker cannot raise it).
func brokerWithDescriptorLimit(_ limit: Int) -> Program {
    Program(executable: "/bin/sh", leadingArguments: ["-c", "ulimit -n \(limit) && exec \"$0\" \"$@\"",
                                                      Program.repbrokerd.executable])
}

/// Opens `count` raw connections to a Unix socket (they wait in its backlog when the broker cannot accept).
func rawConnections(_ path: String, count: Int) throws -> [OwnedDescriptor] {
    try (0..<count).map { _ in try Socket.connectUnix(path: path) }
}

@Suite struct DescriptorLimitTests {
    @Test func outOfDescriptorsTheBrokerBacksOffAndServesAdminAndPeers() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let ports = [FreePort.next(), FreePort.next()]
        let limited = BrokerProcess(siteID: 1, port: ports[0], directory: directory.path, peers: [(2, ports[1])],
                                    extraArguments: ["--heartbeat-ms", "300", "--max-clients", "1000"],
                                    program: brokerWithDescriptorLimit(48))
        let other = BrokerProcess(siteID: 2, port: ports[1], directory: directory.path, peers: [(1, ports[0])],
                                  extraArguments: ["--heartbeat-ms", "300"])
        try limited.start()
        defer { limited.terminate() }
        try other.start()
        defer { other.terminate() }
        #expect(limited.waitForPeers(timeout: 10))
        let pid = try #require(limited.child?.pid)

        var held = try rawConnections(limited.socketPath, count: 60)
        defer { held.forEach { $0.close() } }
        #expect(limited.waitForStats(timeout: 10) { $0.totals.acceptFailures > 0 }, "the admin socket answers")
        let cpuBefore = ProcessStats.cpuSeconds(pid)
        let linesBefore = limited.log.components(separatedBy: "accept failed").count
        // Three seconds out of descriptors, heartbeats every 300 ms: the link must not go down for silence, and
        // the admin socket answers throughout.
        let faltered = Deadline.wait(timeout: 3, interval: 0.2) {
            (try? limited.stats().peers.first?.state) != .connected
        }
        #expect(!faltered, "the peer link went down or the admin socket stopped answering")
        let cpu = ProcessStats.cpuSeconds(pid) - cpuBefore
        let lines = limited.log.components(separatedBy: "accept failed").count - linesBefore
        #expect(cpu < 1.0, "the broker spent \(cpu) s of CPU in 3 s: it spins on its listener")
        #expect(lines <= 5, "\(lines) accept-failure lines in 3 s: at most one per backoff period")
        #expect(limited.log.contains("suppressed="))

        // Descriptors free again: the waiting clients are served.
        held.forEach { $0.close() }
        held.removeAll()
        let sender = try client(limited)
        defer { sender.close() }
        let receiver = try client(other, roles: [.receiver])
        defer { receiver.close() }
        try sender.send(control: [], rec: [42], to: 2)
        #expect(try receiver.receive(timeout: 10)?.rec == [42])
    }

    @Test func aClientOverMaxClientsIsRefusedWithAReason() throws {
        try withSites(1, extraArguments: ["--max-clients", "3"]) { sites in
            let broker = sites.broker(1)
            let first = try (0..<3).map { try client(broker, name: "c\($0)") }
            defer { first.forEach { $0.close() } }
            do {
                let extra = try client(broker, name: "extra")
                extra.close()
                Issue.record("a fourth client was served")
            } catch {
                #expect("\(error)".contains("max-clients"), "\(error)")
            }
            #expect(try broker.stats().totals.clientsRefused == 1)
            first[0].close()
            #expect(broker.waitForStats(timeout: 10) { $0.totals.clientsConnected == 2 })
            let replacement = try client(broker, name: "replacement")
            replacement.close()
        }
    }

    @Test func theDefaultMaxClientsLeavesDescriptorsForEverythingElse() {
        #expect(Broker.defaultMaxClients(descriptorLimit: 40) == 8)
        #expect(Broker.defaultMaxClients(descriptorLimit: 1024) == 192)
        #expect(Broker.defaultMaxClients(descriptorLimit: 1 << 20) == 4096)
    }
}
