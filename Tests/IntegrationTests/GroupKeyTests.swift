// Peer links prove a shared group key (HMAC-SHA256 over per-connection nonces) before anything else: sites
// with the key link up; a broker with another key, or none, can neither link nor join.
import BrokerDaemon
import BrokerHarness
import Foundation
import Testing

@Suite struct GroupKeyTests {
    @Test func onlyBrokersWithTheGroupKeyLinkOrJoin() throws {
        let keys = try TemporaryDirectory()
        defer { keys.remove() }
        let good = keys.path + "/group.key"
        let wrong = keys.path + "/other.key"
        try Data("correct horse battery staple 42".utf8).write(to: URL(fileURLWithPath: good))
        try Data("incorrect horse battery staple 4".utf8).write(to: URL(fileURLWithPath: wrong))
        try withSites(2, extraArguments: ["--heartbeat-ms", "200", "--group-key-file", good]) { sites in
            for broker in sites.brokers { #expect(broker.waitForPeers(timeout: 10), "keyed site \(broker.siteID) did not link") }
            for (siteID, key) in [(Int32(3), Optional(wrong)), (4, nil)] {
                var arguments = ["--heartbeat-ms", "200", "--join", "127.0.0.1:\(sites.broker(1).port)"]
                if let key { arguments += ["--group-key-file", key] }
                let outsider = BrokerProcess(siteID: siteID, port: FreePort.next(), directory: sites.directory.path,
                                             peers: [], extraArguments: arguments)
                try outsider.start()
                defer { outsider.terminate() }
                // Whichever end notices first refuses; the outsider's log says so either way.
                #expect(Deadline.wait(timeout: 20) { outsider.log.contains("group key") }, "site \(siteID) was not refused")
                #expect(try outsider.stats().peers.allSatisfy { $0.state != .connected })
            }
            let members = try sites.broker(1).stats().peers.map(\.siteID)
            #expect(members == [2], "an outsider became a member: \(members)")
            #expect(try sites.broker(1).stats().peers.allSatisfy { $0.state == .connected })
        }
    }
}
