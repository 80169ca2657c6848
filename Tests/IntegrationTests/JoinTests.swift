// Sites that join a running group: through one member, a fourth broker links to all three; every member
// learns it; a duplicate site id is refused on both sides; membership survives restarts; a site can be
// removed for good.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient
import Testing

/// A broker that joins `sites` through the member `helper`.
func joiner(_ sites: LocalSites, siteID: Int32, through helper: Int32) -> BrokerProcess {
    BrokerProcess(siteID: siteID, port: FreePort.next(), directory: sites.directory.path, peers: [],
                  extraArguments: ["--heartbeat-ms", "200", "--join", "127.0.0.1:\(sites.broker(helper).port)"])
}

@Suite struct JoinTests {
    @Test func aFourthSiteJoinsThroughOneMemberAndEveryoneMeshes() throws {
        try withSites(3) { sites in
            let receivers = try sites.brokers.map { try client($0, roles: [.receiver], name: "recv-\($0.siteID)") }
            // Traffic runs through the join: site 1 broadcasts until the new site is fully linked.
            let traffic = try client(sites.broker(1))
            let stop = StopFlag()
            let sent = Counter()
            startThread {
                while !stop.isSet {
                    guard (try? traffic.send(control: [], rec: Array("t\(sent.value)".utf8), to: SiteID.broadcast)) != nil else { return }
                    sent.increment()
                    usleep(1000)
                }
            }
            defer { stop.set() }
            let fourth = joiner(sites, siteID: 4, through: 2)
            try fourth.start()
            defer { fourth.terminate() }
            for broker in sites.brokers + [fourth] {
                #expect(broker.waitForStats(timeout: 20) { stats in
                    stats.peers.count == 3 && stats.peers.allSatisfy { $0.state == .connected }
                }, "site \(broker.siteID) is not linked to the three others")
            }
            stop.set()
            let total = sent.value
            #expect(total > 0)
            for receiver in receivers.dropFirst() {
                var got: [String] = []
                while got.count < total, let message = try receiver.receive(timeout: 10) {
                    got.append(String(decoding: message.rec, as: UTF8.self))
                }
                #expect(got == (0..<total).map { "t\($0)" }, "site \(receiver.siteID) lost or reordered traffic during the join")
            }
            let origins = try Dictionary(uniqueKeysWithValues: sites.broker(2).stats().peers.map { ($0.siteID, $0.origin) })
            #expect(origins[4] == .joined)
            #expect(try sites.broker(1).stats().peers.first { $0.siteID == 4 }?.origin == .learned)
            #expect(try Set(fourth.stats().peers.map(\.origin)) == [.joined, .learned])

            let newcomer = try client(fourth, name: "newcomer")
            try newcomer.send(control: [], rec: Array("hello from 4".utf8), to: SiteID.broadcast)
            for receiver in receivers {
                var got: [ReceivedMessage] = []
                while let message = try receiver.receive(timeout: 10) {
                    got.append(message)
                    if message.source == 4 { break }
                }
                #expect(got.last?.rec == Array("hello from 4".utf8), "site \(receiver.siteID)")
            }
            let (status, output) = try runToExit("repbroker", ["sites", "--admin-socket", sites.broker(1).adminSocketPath])
            #expect(status == 0 && output.contains("learned") && output.contains("self"))
        }
    }

    @Test func aDuplicateSiteIDIsRefusedOnBothSides() throws {
        try withSites(2) { sites in
            let impostor = BrokerProcess(siteID: 2, port: FreePort.next(), directory: sites.directory.path + "/impostor",
                                         peers: [], extraArguments: ["--join", "127.0.0.1:\(sites.broker(1).port)"])
            try FileManager.default.createDirectory(atPath: impostor.directory, withIntermediateDirectories: true)
            try? impostor.start(timeout: 5)
            #expect(impostor.child?.waitForExit(timeout: 15) == 1)
            #expect(impostor.log.contains("already a member"))
            #expect(sites.broker(1).log.contains("already a member"))
            #expect(try sites.broker(1).stats().peers.map(\.siteID) == [2])
            #expect(sites.broker(1).waitForPeers(timeout: 5), "the real site 2 keeps its link")
        }
    }

    @Test func membershipSurvivesRestartsAndRemovalSpreads() throws {
        try withSites(2) { sites in
            let third = joiner(sites, siteID: 3, through: 1)
            try third.start()
            defer { third.terminate() }
            for broker in sites.brokers + [third] { #expect(broker.waitForPeers(timeout: 20)) }
            // Restarted without --join, the joined site finds its group from its membership file.
            third.kill9()
            third.extraArguments = ["--heartbeat-ms", "200"]
            try third.start()
            #expect(third.waitForStats(timeout: 20) { $0.peers.count == 2 && $0.peers.allSatisfy { $0.state == .connected } })
            // A member that learned site 3 remembers it across its own restart.
            sites.broker(2).kill9()
            try sites.broker(2).start()
            #expect(sites.broker(2).waitForStats(timeout: 20) { stats in stats.peers.contains { $0.siteID == 3 && $0.state == .connected } })

            let (status, _) = try runToExit("repbroker", ["remove-site", "--admin-socket", sites.broker(1).adminSocketPath, "3"])
            #expect(status == 0)
            for broker in sites.brokers {
                #expect(broker.waitForStats(timeout: 10) { !$0.peers.contains { $0.siteID == 3 } }, "site \(broker.siteID)")
            }
            #expect(sites.broker(1).log.contains("site removed from the group"))
            #expect(sites.broker(2).waitForStats(timeout: 5) { $0.peers.allSatisfy { $0.state == .connected } })
        }
    }
}
