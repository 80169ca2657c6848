// Group slots: idle groups are released (at their site and at every peer) so throw-away groups cannot use
// the table up for good; past --max-groups a local client gets its own error code, and a peer's group is
// refused for that group alone, never as a bad frame: the link stays up for the other groups.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Testing

/// Two brokers with their own extra arguments; site 2 starts only when asked.
func twoSites(_ directory: TemporaryDirectory, site1: [String], site2: [String]) -> (BrokerProcess, BrokerProcess) {
    let ports = [FreePort.next(), FreePort.next()]
    let first = BrokerProcess(siteID: 1, port: ports[0], directory: directory.path, peers: [(2, ports[1])],
                              extraArguments: ["--heartbeat-ms", "100"] + site1)
    let second = BrokerProcess(siteID: 2, port: ports[1], directory: directory.path, peers: [(1, ports[0])],
                               extraArguments: ["--heartbeat-ms", "100"] + site2)
    return (first, second)
}

@Suite struct GroupSlotTests {
    @Test func idleGroupsAreReleasedEverywhereAndTheirSlotsServeNewGroups() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let limits = ["--max-groups", "8", "--group-grace-ms", "200"]
        let (site1, site2) = twoSites(directory, site1: limits, site2: limits)
        try site1.start()
        defer { site1.terminate() }
        try site2.start()
        defer { site2.terminate() }
        #expect(site1.waitForPeers(timeout: 10) && site2.waitForPeers(timeout: 10))

        for index in 0..<8 {
            let throwaway = try client(site1, group: "throwaway-\(index)")
            try throwaway.send(control: [], rec: [UInt8(index)], to: 2)
            throwaway.close()
        }
        #expect(site2.waitForStats(timeout: 10) { $0.groups.count == 8 }, "site 2 made site 1's groups")
        // A message waiting for a receiver keeps its group; a receiver takes them, and leaves.
        for index in 0..<8 {
            let taker = try client(site2, roles: [.receiver], group: "throwaway-\(index)")
            #expect(try taker.receive(timeout: 10)?.rec == [UInt8(index)])
            taker.close()
        }
        for site in [site1, site2] {
            #expect(site.waitForStats(timeout: 10) { $0.groups.isEmpty && $0.totals.groupsReleased >= 8 },
                    "site \(site.siteID) did not release its idle groups: \((try? site.stats().groups.map(\.name)) ?? [])")
        }

        let held = try (0..<8).map { try client(site1, group: "fresh-\($0)") }
        defer { held.forEach { $0.close() } }
        let receiver = try client(site2, roles: [.receiver], group: "fresh-3")
        defer { receiver.close() }
        try held[3].send(control: [], rec: Array("in a reused slot".utf8), to: 2)
        #expect(try receiver.receive(timeout: 10).map { String(decoding: $0.rec, as: UTF8.self) } == "in a reused slot")

        do {
            try client(site1, group: "one-too-many").close()
            Issue.record("a ninth group was served")
        } catch {
            #expect("\(error)".contains("--max-groups"), "\(error)")
            #expect("\(error)".contains("\(ErrorCode.groupLimit)"), "\(error)")
        }
        let stats = try site1.stats()
        #expect(stats.totals.groupsRefused == 1 && stats.totals.badFrames == 0)
    }

    @Test func aPeersGroupOverTheLimitIsRefusedAloneAndTheLinkStaysUp() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (site1, site2) = twoSites(directory, site1: ["--max-groups", "16"], site2: ["--max-groups", "4"])
        try site1.start()
        defer { site1.terminate() }
        // Six groups at site 1 while site 2 is away; site 2 has room for four.
        let senders = try (0..<6).map { try client(site1, group: "g\($0)") }
        defer { senders.forEach { $0.close() } }
        try site2.start()
        defer { site2.terminate() }
        #expect(site1.waitForPeers(timeout: 10) && site2.waitForPeers(timeout: 10))
        for (index, sender) in senders.enumerated() { try sender.send(control: [], rec: [UInt8(index)], to: 2) }
        #expect(site2.waitForStats(timeout: 10) { $0.groups.count == 4 && $0.totals.groupsRefused == 2 })

        let bound = try #require(site2.stats().groups.first?.name)
        let index = try #require(Int(bound.dropFirst()))
        let receiver = try client(site2, roles: [.receiver], group: bound)
        defer { receiver.close() }
        #expect(try receiver.receive(timeout: 10)?.rec == [UInt8(index)], "the message that waited for a receiver")
        try senders[index].send(control: [], rec: [7], to: 2)
        #expect(try receiver.receive(timeout: 10)?.rec == [7], "the group flows")

        let refused = try #require((0..<6).first { name in try site2.stats().groups.allSatisfy { $0.name != "g\(name)" } })
        try senders[refused].send(control: [], rec: [8], to: 2)
        #expect(site2.waitForStats(timeout: 10) { $0.totals.groupsRefused == 3 }, "a message of a refused group is counted")
        #expect(throws: BrokerClientError.self) { try client(site2, group: "local-new").close() }

        // The link never flapped: no reconnect and no bad frame on either side, well past a heartbeat timeout
        // (heartbeats every 100 ms; the old broker reconnected every 100 ms or so).
        let flapped = Deadline.wait(timeout: 1, interval: 0.05) {
            [site1, site2].contains { site in
                guard let stats = try? site.stats() else { return true }
                return stats.peers.first?.state != .connected || stats.peers.first?.reconnects != 0 || stats.totals.badFrames != 0
            }
        }
        #expect(!flapped, "the link went down, reconnected or saw a bad frame")
        for site in [site1, site2] {
            let stats = try site.stats()
            #expect(stats.peers.first?.state == .connected && stats.peers.first?.reconnects == 0)
            #expect(stats.totals.badFrames == 0)
        }
    }
}
