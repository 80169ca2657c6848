// Faults with real processes: a receiver killed under traffic is replaced by its standby; a broker killed
// with -9 is shown down by its peers, and after a restart the links and the traffic come back; a client
// survives its broker's restart.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient
import Testing

/// A flag one thread sets and another reads.
final class StopFlag: @unchecked Sendable {
    private let lock = ConditionLock()
    private var flag = false
    var isSet: Bool { lock.withLock { flag } }
    func set() { lock.withLock { flag = true } }
}

final class Counter: @unchecked Sendable {
    private let lock = ConditionLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func increment() { lock.withLock { count += 1 } }
}

@Suite struct FailoverTests {
    @Test(arguments: ["uds", "shm"])
    func aStandbyTakesOverWhenTheReceiverIsKilled(transport: String) throws {
        try withSites(2) { sites in
            let site2 = sites.broker(2)
            let first = try startReceiver(site2, name: "recv-first", transport: transport)
            defer { first.kill9() }
            #expect(site2.waitForStats(timeout: 10) { $0.clients.contains { $0.name == "recv-first" && $0.roles == ["receiver"] } })
            let standby = try startReceiver(site2, name: "recv-standby", transport: transport)
            defer { standby.kill9() }
            #expect(site2.waitForStats(timeout: 10) { $0.clients.contains { $0.name == "recv-standby" && $0.roles == ["standby"] } })

            // Traffic flows from another thread for the whole test, through the kill and the hand-over.
            let sender = try client(sites.broker(1), name: "steady-sender")
            let flowing = StopFlag()
            let sent = Counter()
            startThread {
                while !flowing.isSet, (try? sender.send(control: [], rec: Array("during-\(sent.value)".utf8), to: 2)) != nil {
                    sent.increment()
                    if sent.value % 50 == 0 { usleep(1000) }
                }
            }
            #expect(first.waitForLines(timeout: 10) { $0.count >= 200 })
            first.kill9()
            #expect(site2.waitForStats(timeout: 10) { stats in
                stats.clients.contains { $0.name == "recv-standby" && $0.roles == ["receiver"] }
                    && !stats.clients.contains { $0.name == "recv-first" }
            })
            #expect(standby.waitForLines(timeout: 10) { parse($0).contains { $0.rec.hasPrefix("during-") } },
                    "traffic reaches the new receiver while it still flows")
            flowing.set()
            for index in 0..<200 { try sender.send(control: [], rec: Array("after-\(index)".utf8), to: 2) }
            #expect(standby.waitForLines(timeout: 10) { parse($0).filter { $0.rec.hasPrefix("after-") }.count == 200 })
            let after = parse(standby.lines).filter { $0.rec.hasPrefix("after-") }
            #expect(after.map(\.rec) == (0..<200).map { "after-\($0)" })
            #expect(after.allSatisfy { $0.source == 1 })
            // Nothing arrives twice across the hand-over, and what arrives is in order.
            let all = parse(first.lines) + parse(standby.lines)
            #expect(Set(all).count == all.count)
            let during = all.compactMap { $0.rec.hasPrefix("during-") ? Int($0.rec.dropFirst(7)) : nil }
            #expect(during == during.sorted())
        }
    }

    @Test func aKilledBrokerIsShownDownAndItsLinksAndTrafficComeBack() throws {
        try withSites(3) { sites in
            let site3 = sites.broker(3)
            site3.kill9()
            for siteID: Int32 in [1, 2] {
                #expect(sites.broker(siteID).waitForStats(timeout: 10) { stats in
                    stats.peers.first { $0.siteID == 3 }?.state == .down
                        && stats.peers.first { $0.siteID != 3 }?.state == .connected
                }, "site \(siteID) does not show site 3 down")
            }
            try site3.start()
            for broker in sites.brokers { #expect(broker.waitForPeers(timeout: 15), "site \(broker.siteID) relinked") }
            let stats1 = try sites.broker(1).stats()
            #expect((stats1.peers.first { $0.siteID == 3 }?.reconnects ?? 0) >= 1)

            let receiver3 = try client(site3, roles: [.receiver], name: "recv-3")
            let receiver1 = try client(sites.broker(1), roles: [.receiver], name: "recv-1")
            let sender1 = try client(sites.broker(1))
            let sender3 = try client(site3)
            for index in 0..<20 {
                try sender1.send(control: [], rec: Array("to-3-\(index)".utf8), to: 3)
                try sender3.send(control: [], rec: Array("from-3-\(index)".utf8), to: SiteID.broadcast)
            }
            let at3 = try receiveAll(receiver3, count: 20)
            #expect(at3.map { String(decoding: $0.rec, as: UTF8.self) } == (0..<20).map { "to-3-\($0)" })
            let at1 = try receiveAll(receiver1, count: 20)
            #expect(at1.map { String(decoding: $0.rec, as: UTF8.self) } == (0..<20).map { "from-3-\($0)" })
            #expect(at1.allSatisfy { $0.source == 3 })
        }
    }

    @Test func aFrozenBrokerIsDeclaredDownAfterThreeSilentHeartbeatsAndRelinksWhenItWakes() throws {
        try withSites(2) { sites in
            let site2 = sites.broker(2)
            site2.child?.signal(SIGSTOP)
            defer { site2.child?.signal(SIGCONT) }
            // Its sockets stay open: only the heartbeat rule (3 x 200 ms of silence) can declare it down.
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.peers[0].state == .down })
            let silence = try sites.broker(1).stats().peers[0].millisecondsSinceHeard ?? 0
            #expect(silence >= 600)
            site2.child?.signal(SIGCONT)
            #expect(sites.broker(1).waitForPeers(timeout: 15))
            #expect(site2.waitForPeers(timeout: 15))
        }
    }

    @Test(arguments: [ClientTransport.unixSocket, .sharedMemory])
    func aClientFailsFastWhileItsBrokerIsDownAndReconnectsAfterARestart(transport: ClientTransport) throws {
        try withSites(2) { sites in
            let site1 = sites.broker(1)
            let sender = try client(site1, name: "survivor", transport: transport)
            let receiver = try client(sites.broker(2), roles: [.receiver])
            try sender.send(control: [], rec: [1], to: 2)
            #expect(try receiver.receive(timeout: 10)?.rec == [1])
            site1.kill9()
            #expect(Deadline.wait(timeout: 5) { !sender.isConnected })
            #expect(throws: BrokerClientError.self) { try sender.send(control: [], rec: [2], to: 2) }
            try site1.start()
            #expect(sender.waitForConnection(timeout: 10))
            #expect(site1.waitForPeers(timeout: 10))
            try sender.send(control: [], rec: [3], to: 2, flags: .permanent)
            #expect(try receiver.receive(timeout: 10)?.rec == [3])
            #expect(try site1.stats().clients.contains { $0.name == "survivor" && $0.transport == (transport == .sharedMemory ? "shm" : "uds") },
                    "a restarted broker maps fresh rings for a reconnecting client")
        }
    }
}
