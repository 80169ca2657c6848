// Peer links over TLS 1.3 between real brokers, with certificates the openssl tool makes: a group delivers
// exactly once, takes a joiner and a restart; what must be refused is refused with a reason on both sides and
// nothing passes; a corrupted stream drops the link and loses or corrupts nothing; certificates reload with
// links up; and OpenSSL's own client negotiates TLS 1.3 with a broker, which then refuses it at HELLO.
import BrokerDaemon
import BrokerHarness
import Foundation
import Testing

/// Starts brokers with TLS (each with its own site certificate and the group's CA), runs `body`, stops them.
func withTLSSites<R>(_ count: Int, _ certificates: TestCertificates, _ body: (LocalSites) throws -> R) throws -> R {
    try withSites(count, siteArguments: { certificates.brokerArguments("site\($0)") }, body)
}

/// `count` lines `<prefix>-<i>-` padded to about 200 bytes: a corrupted one would not match its index.
func numberedLines(_ prefix: String, count: Int) -> [String] {
    (0..<count).map { "\(prefix)-\($0)-" + String(repeating: "x", count: 180) }
}

@Suite(.enabled(if: TestCertificates.testsRun, "OpenSSL 3 (libssl3) and the openssl tool"))
struct TLSLinkTests {
    @Test func threeSitesOverTLSDeliverOnceTakeAJoinerAndARestart() throws {
        let certificates = try TestCertificates.group(sites: [1, 2, 3, 4])
        try withTLSSites(3, certificates) { sites in
            for broker in sites.brokers {
                let stats = try broker.stats()
                #expect(stats.peers.allSatisfy { $0.tls?.hasPrefix("TLSv1.3 TLS_") == true }, "\(stats.peers.map(\.tls))")
            }
            // Every site broadcasts 300 messages; each site receives the 600 of the two others once.
            let receivers = try sites.brokers.map { try startReceiver($0, count: 600, name: "recv-\($0.siteID)") }
            for broker in sites.brokers {
                #expect(broker.waitForStats(timeout: 10) { $0.clients.contains { $0.roles.contains("receiver") } })
            }
            let senders = try sites.brokers.map {
                try runSender($0, to: "all", lines: numberedLines("s\($0.siteID)", count: 300), name: "send-\($0.siteID)")
            }
            for sender in senders { #expect(sender.waitForExit(timeout: 60) == 0, "\(sender.name)") }
            for (index, receiver) in receivers.enumerated() {
                #expect(receiver.waitForExit(timeout: 60) == 0, "site \(index + 1) did not receive everything")
                let received = parse(receiver.lines)
                let expected = Set(sites.brokers.filter { $0.siteID != Int32(index + 1) }.flatMap { broker in
                    numberedLines("s\(broker.siteID)", count: 300).map { Received(line: "from=\(broker.siteID) \($0)")! }
                })
                #expect(received.count == 600 && Set(received) == expected, "site \(index + 1): \(received.count) received")
            }

            // A fourth site joins through site 1 over TLS and links with every member.
            var joinArguments = ["--heartbeat-ms", "200", "--join", "127.0.0.1:\(sites.broker(1).port)"]
            joinArguments += certificates.brokerArguments("site4")
            let joiner = BrokerProcess(siteID: 4, port: FreePort.next(), directory: sites.directory.path, peers: [],
                                       extraArguments: joinArguments)
            try joiner.start()
            defer { joiner.terminate() }
            #expect(joiner.waitForStats(timeout: 20) { stats in
                stats.peers.count == 3 && stats.peers.allSatisfy { $0.state == .connected && $0.tls?.hasPrefix("TLSv1.3") == true }
            }, "the joiner did not link to every member over TLS: \(joiner.log.suffix(1500))")
            for broker in sites.brokers {
                #expect(broker.waitForStats(timeout: 20) { $0.peers.contains { $0.siteID == 4 && $0.state == .connected } })
            }
            let heard = try startReceiver(sites.broker(2), count: 100, name: "recv-joiner")
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.clients.contains { $0.name == "recv-joiner" } })
            let joinerSender = try runSender(joiner, to: "2", lines: numberedLines("j", count: 100), name: "send-joiner")
            #expect(joinerSender.waitForExit(timeout: 30) == 0)
            #expect(heard.waitForExit(timeout: 30) == 0)
            #expect(Set(parse(heard.lines)) == Set(numberedLines("j", count: 100).map { Received(line: "from=4 \($0)")! }))

            // Site 2 restarts: its links come back over TLS and deliver again.
            #expect(sites.broker(2).terminate() == 0)
            try sites.broker(2).start()
            #expect(sites.broker(2).waitForStats(timeout: 20) { stats in
                stats.peers.count == 3 && stats.peers.allSatisfy { $0.state == .connected && $0.tls?.hasPrefix("TLSv1.3") == true }
            }, "the restarted site did not link again: \(sites.broker(2).log.suffix(1500))")
            let afterRestart = try startReceiver(sites.broker(2), count: 100, name: "recv-restart")
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.clients.contains { $0.name == "recv-restart" } })
            let restartSender = try runSender(sites.broker(1), to: "2", lines: numberedLines("r", count: 100), name: "send-restart")
            #expect(restartSender.waitForExit(timeout: 30) == 0)
            #expect(afterRestart.waitForExit(timeout: 30) == 0)
            #expect(Set(parse(afterRestart.lines)) == Set(numberedLines("r", count: 100).map { Received(line: "from=1 \($0)")! }))
            for broker in sites.brokers + [joiner] { #expect(try broker.stats().totals.tlsFailures == 0) }
        }
    }

    /// A 48 MiB message (more than a TLS write buffer, many records) and then a stream cross a TLS link whole,
    /// once and in order, with the flow control of a plain link (a window per flow, credit returned). The stream
    /// was dropped once, on plain links too: the large frame counted twice against the peer queue limit while it
    /// was on the wire (PeerSchedulerTests replays it).
    @Test func aLargeMessageAndAStreamCrossATLSLinkWholeAndInOrder() throws {
        let certificates = try TestCertificates.group(sites: [1, 2])
        try withTLSSites(2, certificates) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver])
            defer { receiver.close() }
            let sender = try client(sites.broker(1))
            defer { sender.close() }
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.clients.contains { $0.roles.contains("receiver") } })
            let rec = patterned(count: 48 << 20)
            try sender.send(control: [7], rec: rec, to: 2)
            for index in 0..<2000 { try sender.send(control: [8], rec: Array("m\(index)".utf8), to: 2) }
            let large = try #require(try receiver.receive(timeout: 60))
            #expect(large.control == [7] && sameBytes(large.rec, rec))
            let stream = try receiveAll(receiver, count: 2000, timeout: 30).map { String(decoding: $0.rec, as: UTF8.self) }
            #expect(stream == (0..<2000).map { "m\($0)" }, "\(stream.count) of 2000 arrived; first: \(stream.prefix(3))")
            let link = try #require(try sites.broker(1).stats().peers.first)
            #expect(link.tls?.hasPrefix("TLSv1.3") == true && link.reconnects == 0 && link.dropped == 0)
        }
    }

    /// An outsider that must not link: its reason appears in both logs, it never links, and nothing it sends
    /// arrives.
    @Test(arguments: ["another CA", "expired", "another site", "plain"])
    func anOutsiderIsRefusedWithAReasonOnBothSidesAndNothingPasses(_ kind: String) throws {
        let certificates = try TestCertificates.group(sites: [1, 2])
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let port1 = FreePort.next()
        let port2 = FreePort.next()
        let member = BrokerProcess(siteID: 1, port: port1, directory: directory.path, peers: [(2, port2)],
                                   extraArguments: ["--heartbeat-ms", "200"] + certificates.brokerArguments("site1"))
        var outsiderArguments = ["--heartbeat-ms", "200"]
        // What each side's log says (lowercased), whichever end dialled.
        let memberSays: [String]
        let outsiderSays: [String]
        switch kind {
        case "another CA":
            try certificates.makeCA("other")
            try certificates.makeSite(2, ca: "other", name: "intruder")
            outsiderArguments += certificates.brokerArguments("intruder")
            memberSays = ["unable to get local issuer certificate"]
            outsiderSays = ["unknown ca"]
        case "expired":
            try certificates.makeExpiredCertificate("expired", ca: "ca", site: 2)
            outsiderArguments += certificates.brokerArguments("expired")
            memberSays = ["certificate has expired"]
            outsiderSays = ["certificate expired"]
        case "another site":
            try certificates.makeSite(3, name: "site3")
            outsiderArguments += certificates.brokerArguments("site3")
            memberSays = ["hello says site 2 and its certificate names site 3"]
            outsiderSays = ["hello says site 2 and its certificate names site 3"]
        default:
            memberSays = ["plain text"]
            outsiderSays = ["tls"]
        }
        let outsider = BrokerProcess(siteID: 2, port: port2, directory: directory.path, peers: [(1, port1)],
                                     extraArguments: outsiderArguments)
        try member.start()
        defer { member.terminate() }
        try outsider.start()
        defer { outsider.terminate() }
        let receiver = try startReceiver(member, name: "recv-member")
        defer { receiver.kill9() }
        let sender = try runSender(outsider, to: "1", lines: numberedLines("o", count: 10), name: "send-outsider")
        _ = sender.waitForExit(timeout: 10)
        #expect(Deadline.wait(timeout: 20) { memberSays.allSatisfy { member.log.lowercased().contains($0) } },
                "the member's log: \(member.log.suffix(1500))")
        #expect(Deadline.wait(timeout: 20) { outsiderSays.allSatisfy { outsider.log.lowercased().contains($0) } },
                "the outsider's log: \(outsider.log.suffix(1500))")
        let memberStats = try member.stats()
        #expect(memberStats.peers.allSatisfy { $0.state != .connected && $0.tls == nil })
        #expect(memberStats.totals.messagesReceivedFromPeers == 0 && memberStats.totals.tlsFailures > 0)
        #expect(try outsider.stats().peers.allSatisfy { $0.state != .connected })
        #expect(parse(receiver.lines).isEmpty)
    }

    /// A man in the middle flips one byte: TLS refuses the record, the link drops and reconnects, and every
    /// message arrives once and whole.
    @Test func aFlippedByteDropsTheLinkAndNothingCorruptedOrLostArrives() throws {
        let certificates = try TestCertificates.group(sites: [1, 2])
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let port1 = FreePort.next()
        let port2 = FreePort.next()
        // Every connection between the two goes through a proxy: each site dials and advertises the proxy to it.
        let proxyTo1 = try ByteFlippingProxy(upstream: "127.0.0.1:\(port1)")
        let proxyTo2 = try ByteFlippingProxy(upstream: "127.0.0.1:\(port2)")
        defer { proxyTo1.stop(); proxyTo2.stop() }
        let site1 = BrokerProcess(siteID: 1, port: port1, directory: directory.path, peers: [(2, proxyTo2.port)],
                                  extraArguments: ["--heartbeat-ms", "200", "--advertise", "127.0.0.1:\(proxyTo1.port)"]
                                      + certificates.brokerArguments("site1"))
        let site2 = BrokerProcess(siteID: 2, port: port2, directory: directory.path, peers: [(1, proxyTo1.port)],
                                  extraArguments: ["--heartbeat-ms", "200", "--advertise", "127.0.0.1:\(proxyTo2.port)"]
                                      + certificates.brokerArguments("site2"))
        try site1.start()
        defer { site1.terminate() }
        try site2.start()
        defer { site2.terminate() }
        #expect(site1.waitForPeers(timeout: 20) && site2.waitForPeers(timeout: 20))
        let count = 20_000
        let lines = numberedLines("m", count: count)
        let receiver = try startReceiver(site2, count: count, timeout: 60, name: "recv")
        #expect(site2.waitForStats(timeout: 10) { $0.clients.contains { $0.roles.contains("receiver") } })
        let sender = try runSender(site1, to: "2", lines: lines, name: "send")
        #expect(site2.waitForStats(timeout: 30) { $0.totals.messagesReceivedFromPeers >= 2_000 })
        let connectionsBefore = proxyTo1.connections + proxyTo2.connections
        proxyTo1.flipNextByte()
        proxyTo2.flipNextByte()
        #expect(Deadline.wait(timeout: 10) { proxyTo1.flipped + proxyTo2.flipped >= 1 })
        #expect(sender.waitForExit(timeout: 60) == 0)
        #expect(receiver.waitForExit(timeout: 90) == 0, "not every message arrived: \(parse(receiver.lines).count)")
        let received = parse(receiver.lines)
        #expect(received.count == count, "duplicates or losses: \(received.count)")
        #expect(Set(received) == Set(lines.map { Received(line: "from=1 \($0)")! }), "a message was corrupted")
        let logs = (site1.log + site2.log).lowercased()
        #expect(logs.contains("tls read"), "no TLS failure logged: \(site2.log.suffix(1500))")
        #expect(Deadline.wait(timeout: 20) { proxyTo1.connections + proxyTo2.connections > connectionsBefore },
                "the link did not reconnect: \(proxyTo1.connections) + \(proxyTo2.connections) connections\n\(site1.log.suffix(2000))\n\(site2.log.suffix(2000))")
        #expect(site1.waitForStats(timeout: 20) { $0.peers.allSatisfy { $0.state == .connected && $0.reconnects >= 1 } })
    }

    /// New certificates with links up: `repbroker reload-tls` and SIGHUP load them, the links keep running and
    /// lose nothing, new connections present the new certificate, and a file that cannot be loaded is refused
    /// with the old certificates kept.
    @Test func certificatesReloadWithLinksUpAndNothingIsLost() throws {
        let certificates = try TestCertificates.group(sites: [1, 2, 3])
        try withTLSSites(2, certificates) { sites in
            let count = 20_000
            let lines = numberedLines("m", count: count)
            let receiver = try startReceiver(sites.broker(2), count: count, timeout: 60, name: "recv")
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.clients.contains { $0.roles.contains("receiver") } })
            let sender = try runSender(sites.broker(1), to: "2", lines: lines, name: "send")
            #expect(sites.broker(2).waitForStats(timeout: 30) { $0.totals.messagesReceivedFromPeers >= 1_000 })
            // A new key and certificate for site 1, moved over the files it was started with.
            try certificates.makeSite(1, name: "site1-new")
            for suffix in ["pem", "key"] {
                _ = rename(certificates.path("site1-new.\(suffix)"), certificates.path("site1.\(suffix)"))
            }
            let reload = try runToExit("repbroker", ["reload-tls", "--admin-socket", sites.broker(1).adminSocketPath])
            #expect(reload.status == 0 && reload.output.contains("TLS reloaded"), "\(reload.output)")
            sites.broker(2).child?.signal(SIGHUP)
            #expect(Deadline.wait(timeout: 10) { sites.broker(2).log.contains("TLS certificates reloaded") })
            #expect(sender.waitForExit(timeout: 60) == 0)
            #expect(receiver.waitForExit(timeout: 60) == 0, "not every message arrived: \(parse(receiver.lines).count)")
            let received = parse(receiver.lines)
            #expect(received.count == count && Set(received).count == count)
            for broker in sites.brokers { #expect(try broker.stats().peers.allSatisfy { $0.reconnects == 0 && $0.state == .connected }) }

            // A new connection to site 1 is shown the new certificate.
            let shown = try certificates.openssl(["s_client", "-connect", "127.0.0.1:\(sites.broker(1).port)", "-ign_eof",
                                                  "-cert", "site3.pem", "-key", "site3.key", "-CAfile", "ca.pem"],
                                                 input: "not a HELLO\n")
            let served = try certificates.sha256(ofCertificateIn: shown)
            #expect(served == (try certificates.sha256("site1")), "site 1 still serves its old certificate")

            // A broken certificate file: the reload is refused with a reason, and the link stays up.
            try "not a certificate\n".write(toFile: certificates.path("site1.pem"), atomically: true, encoding: .utf8)
            let refused = try runToExit("repbroker", ["reload-tls", "--admin-socket", sites.broker(1).adminSocketPath])
            #expect(refused.status == 1 && refused.output.contains("certificate"), "\(refused.output)")
            #expect(try sites.broker(1).stats().peers.allSatisfy { $0.state == .connected })
        }
    }

    /// Pins instead of a CA: sites whose certificates match their pins link (certificates of two unrelated
    /// CAs); a certificate no pin names is refused with its SHA-256 in the reason.
    @Test func pinnedSitesLinkWithoutACAAndAnUnpinnedCertificateIsRefused() throws {
        let certificates = try TestCertificates()
        try certificates.makeCA("ca1")
        try certificates.makeCA("ca2")
        try certificates.makeSite(1, ca: "ca1")
        try certificates.makeSite(2, ca: "ca2")
        try certificates.makeSite(2, ca: "ca2", name: "unpinned")
        let pins = ["--tls-pin", "1=\(try certificates.sha256("site1"))", "--tls-pin", "2=\(try certificates.sha256("site2"))"]
        let sites = try LocalSites(count: 2)
        defer { sites.shutDown() }
        for broker in sites.brokers {
            broker.extraArguments += certificates.brokerArguments("site\(broker.siteID)", ca: nil) + pins
        }
        try sites.start()
        #expect(try sites.broker(1).stats().peers.allSatisfy { $0.tls?.hasPrefix("TLSv1.3") == true })
        #expect(sites.broker(2).terminate() == 0)
        sites.broker(2).extraArguments = ["--heartbeat-ms", "200"] + certificates.brokerArguments("unpinned", ca: nil) + pins
        try sites.broker(2).start()
        let unpinned = try certificates.sha256("unpinned")
        #expect(Deadline.wait(timeout: 20) { sites.broker(1).log.contains("(sha256 \(unpinned)) matches no --tls-pin") },
                "\(sites.broker(1).log.suffix(1500))")
        #expect(try sites.broker(1).stats().peers.allSatisfy { $0.state != .connected })
    }

    /// Certificates the broker cannot load stop it at start with the file and the reason (exit 1).
    @Test func aBrokerWhoseCertificatesCannotBeLoadedDoesNotStart() throws {
        let certificates = try TestCertificates.group(sites: [1])
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let paths = ["--socket", directory.path + "/b.sock", "--admin-socket", directory.path + "/a.sock"]
        let missing = try runToExit("repbrokerd", ["--site-id", "1"] + paths + ["--tls-cert", certificates.path("site1.pem"),
                                    "--tls-key", directory.path + "/none.key", "--tls-ca", certificates.path("ca.pem")])
        #expect(missing.status == 1 && missing.output.contains("cannot read the key \(directory.path)/none.key"), "\(missing.output)")
        let mismatched = try runToExit("repbrokerd", ["--site-id", "1"] + paths + ["--tls-cert", certificates.path("site1.pem"),
                                       "--tls-key", certificates.path("ca.key"), "--tls-ca", certificates.path("ca.pem")])
        #expect(mismatched.status == 1 && mismatched.output.contains("ca.key (for the certificate"), "\(mismatched.output)")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/b.sock"))
    }

    /// OpenSSL's own client (the reference implementation) negotiates TLS 1.3 with a broker's peer port; the
    /// broker then refuses what it sends in place of a HELLO, with a reason and a count.
    @Test func opensslSClientNegotiatesTLS13AndIsRefusedAtHello() throws {
        let certificates = try TestCertificates.group(sites: [1, 2, 3])
        try withTLSSites(2, certificates) { sites in
            let before = try sites.broker(1).stats().totals.badFrames
            let output = try certificates.openssl(["s_client", "-connect", "127.0.0.1:\(sites.broker(1).port)", "-brief",
                                                   "-ign_eof", "-cert", "site3.pem", "-key", "site3.key", "-CAfile", "ca.pem"],
                                                  input: "GET / HTTP/1.0\r\n\r\n")
            #expect(output.contains("Protocol version: TLSv1.3"), "\(output)")
            #expect(output.contains("Verification: OK"), "\(output)")
            #expect(Deadline.wait(timeout: 10) { (try? sites.broker(1).stats().totals.badFrames) ?? 0 > before })
            #expect(sites.broker(1).log.contains("peer connection refused"))
        }
    }
}
