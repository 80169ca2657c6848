// Rolling upgrades, the peer side: brokers of the previous release (built from its tag by
// scripts/check-upgrade, which sets REPBROKER_PREVIOUS_BROKER) linked with brokers of this one. Skipped without
// it: building the previous release takes minutes, more than the default test run should.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Testing

@Suite struct PreviousBrokerTests {
    static let previous = ProcessInfo.processInfo.environment["REPBROKER_PREVIOUS_BROKER"]
    /// The newest protocol version the previous release speaks (scripts/check-upgrade reads it from its sources).
    static let previousProtocol = ProcessInfo.processInfo.environment["REPBROKER_PREVIOUS_PROTOCOL"].flatMap { UInt16($0) }

    /// A group upgraded one broker at a time: three sites of the previous release, then each replaced in turn
    /// by this release on the same socket and state directory. At every step every site links with every other
    /// (none refused), messages cross every link both ways, and each link speaks the highest version both ends
    /// speak: the previous release's while either end is of it, this release's once both are upgraded.
    @Test(.enabled(if: previous != nil && previousProtocol != nil,
                   "set REPBROKER_PREVIOUS_BROKER and REPBROKER_PREVIOUS_PROTOCOL (scripts/check-upgrade does)"))
    func aGroupUpgradedOneBrokerAtATimeKeepsEveryLinkAndEveryMessage() throws {
        let old = Program(executable: try #require(Self.previous))
        let oldVersion = Int(min(try #require(Self.previousProtocol), Wire.protocolVersion))
        let sites = try LocalSites(count: 3, extraArguments: ["--heartbeat-ms", "100"], program: old)
        defer { sites.shutDown() }
        try sites.start()
        var upgraded: Set<Int32> = []
        for step in 0...3 {
            if step > 0 {
                let site = Int32(step)
                let broker = sites.broker(site)
                #expect(broker.terminate() == 0)
                broker.program = .repbrokerd
                try broker.start()
                upgraded.insert(site)
            }
            for broker in sites.brokers {
                #expect(broker.waitForStats(timeout: 20) { stats in
                    stats.peers.count == 2 && stats.peers.allSatisfy { $0.state == .connected }
                }, "step \(step): site \(broker.siteID) linked to both others: \(broker.log.suffix(1500))")
                // Neither end refused the other (a TCP "connection refused" while a peer restarts is no refusal).
                #expect(!broker.log.contains("peer connection refused") && !broker.log.contains("peer refused the connection"),
                        "step \(step): site \(broker.siteID): \(broker.log.suffix(1500))")
            }
            // The versions as each broker reports them (a release of protocol 5 reports none).
            for broker in sites.brokers {
                for peer in try broker.stats().peers {
                    let both = upgraded.contains(broker.siteID) && upgraded.contains(peer.siteID)
                    let expected = both ? Int(Wire.protocolVersion) : oldVersion
                    #expect(peer.protocolVersion == expected || (!upgraded.contains(broker.siteID) && peer.protocolVersion == nil),
                            "step \(step): \(broker.siteID)->\(peer.siteID): \(String(describing: peer.protocolVersion))")
                }
            }
            try deliverAcrossEveryLink(sites, tag: "step \(step)")
        }
    }

    /// Every site sends a message to every other, with receivers of this release; each arrives once.
    func deliverAcrossEveryLink(_ sites: LocalSites, tag: String) throws {
        let receivers = try sites.brokers.map { try client($0, roles: [.receiver], name: "receiver-\($0.siteID)") }
        defer { receivers.forEach { $0.close() } }
        for broker in sites.brokers {
            #expect(broker.waitForStats(timeout: 10) { $0.groups.contains { $0.receiverClient != nil } })
        }
        for from in sites.brokers {
            let sender = try client(from, name: "sender-\(from.siteID)")
            for to in sites.brokers where to !== from {
                try sender.send(control: [], rec: Array("\(tag) \(from.siteID)->\(to.siteID)".utf8), to: to.siteID)
            }
            sender.close()
        }
        for (index, receiver) in receivers.enumerated() {
            let site = index + 1
            let messages = try receiveAll(receiver, count: 2, timeout: 20).map { String(decoding: $0.rec, as: UTF8.self) }
            let expected = (1...3).filter { $0 != site }.map { "\(tag) \($0)->\(site)" }
            #expect(messages.sorted() == expected.sorted(), "\(tag): site \(site) got \(messages)")
        }
    }
}
