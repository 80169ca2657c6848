// Three brokers, four sender processes and one receiver process per site: every message arrives exactly
// once at the right site, labelled with its source, in per-sender order; broadcasts never come back to
// their own site; the brokers' counters match what was sent.
import BrokerDaemon
import BrokerHarness
import Foundation
import Testing

@Suite struct MeshDeliveryTests {
    static let perSender = 300

    /// uds: every client on the socket; shm: every client on rings; mixed: half and half on each broker.
    @Test(arguments: ["uds", "shm", "mixed"])
    func everyMessageArrivesOnceInOrderLabelledWithItsSource(transport: String) throws {
        func pick(_ index: Int) -> String { transport == "mixed" ? (index % 2 == 0 ? "shm" : "uds") : transport }
        try withSites(3) { sites in
            // Senders 0 and 1 broadcast, sender 2 unicasts to the next site, sender 3 to the previous one.
            func destination(site: Int32, worker: Int) -> Int32? {
                switch worker {
                case 0, 1: return nil
                case 2: return site % 3 + 1
                default: return (site + 1) % 3 + 1
                }
            }
            // Each site hears, from each of the two others: 2 broadcasters + 1 unicast sender aimed at it.
            let expectedPerSite = 2 * 3 * Self.perSender
            let receivers = try sites.brokers.map {
                try startReceiver($0, count: expectedPerSite, name: "recv-\($0.siteID)", transport: pick(Int($0.siteID)))
            }
            for broker in sites.brokers {
                #expect(broker.waitForStats(timeout: 10) { $0.clients.contains { $0.roles.contains("receiver") } })
            }
            var senders: [ChildProcess] = []
            for broker in sites.brokers {
                for worker in 0..<4 {
                    let lines = (0..<Self.perSender).map { "s\(broker.siteID)-w\(worker)-\($0)" }
                    let to = destination(site: broker.siteID, worker: worker).map { "\($0)" } ?? "all"
                    senders.append(try runSender(broker, to: to, lines: lines, name: "send-\(broker.siteID)-\(worker)",
                                                 transport: pick(worker)))
                }
            }
            for sender in senders { #expect(sender.waitForExit(timeout: 60) == 0, "\(sender.name)") }

            for (index, receiver) in receivers.enumerated() {
                let site = Int32(index + 1)
                #expect(receiver.waitForExit(timeout: 60) == 0, "receiver of site \(site) did not get every message")
                let received = parse(receiver.lines)
                #expect(received.count == expectedPerSite)
                #expect(Set(received).count == received.count, "duplicates at site \(site)")
                var lastSequence: [String: Int] = [:]
                for message in received {
                    let parts = message.rec.split(separator: "-")
                    let sourceSite = Int32(parts[0].dropFirst()) ?? 0
                    let worker = Int(parts[1].dropFirst()) ?? -1
                    let sequence = Int(parts[2]) ?? -1
                    #expect(message.source == sourceSite, "mislabelled \(message.rec) at site \(site)")
                    #expect(sourceSite != site, "broadcast echoed to its own site: \(message.rec)")
                    #expect(destination(site: sourceSite, worker: worker) ?? site == site, "misdelivered \(message.rec)")
                    let key = "\(sourceSite)-\(worker)"
                    #expect(sequence == (lastSequence[key] ?? -1) + 1, "out of order: \(message.rec) at site \(site)")
                    lastSequence[key] = sequence
                }
            }

            for broker in sites.brokers {
                let stats = try broker.stats()
                let senderStats = stats.clients.filter { $0.name.hasPrefix("send-") }
                #expect(senderStats.isEmpty, "senders have exited")
                #expect(stats.totals.messagesRouted == 4 * Self.perSender)
                // Per peer: 2 broadcasters + 1 unicast sender aimed at it.
                for peer in stats.peers {
                    #expect(peer.state == .connected)
                    #expect(peer.messagesSent == 3 * Self.perSender, "site \(broker.siteID) to \(peer.siteID)")
                    #expect(peer.messagesReceived == 3 * Self.perSender, "site \(broker.siteID) from \(peer.siteID)")
                    #expect(peer.dropped == 0)
                }
                #expect(stats.totals.messagesDelivered == expectedPerSite)
                #expect(stats.totals.dropped == 0 && stats.totals.badFrames == 0 && stats.totals.unroutable == 0)
            }
        }
    }

    @Test func recvJSONCarriesEveryFieldAndSendTakesFlagsAndControl() throws {
        try withSites(2) { sites in
            let receiver = try ChildProcess(
                name: "recv-json", executable: Executables.path("repbroker"),
                arguments: ["recv", "--socket", sites.broker(2).socketPath, "--json", "--count", "2", "--timeout", "20"])
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.clients.contains { $0.roles == ["receiver"] } })
            let sender = try runSender(sites.broker(1), to: "2", lines: ["first", "second"], name: "flagged",
                                       flags: "permanent,nobuffer")
            #expect(sender.waitForExit(timeout: 20) == 0)
            #expect(receiver.waitForExit(timeout: 20) == 0)
            struct Line: Decodable { let from: Int32; let control: String; let rec: String; let lsn: [UInt32]; let flags: [String] }
            #expect(receiver.lines.first == #"{"event":"site_down","site":1}"#,
                    "the current state of each peer comes first: site 1 has no receiver")
            let lines = try receiver.lines.filter { $0.hasPrefix("{\"control") }
                .map { try JSONDecoder().decode(Line.self, from: Data($0.utf8)) }
            #expect(lines.map { String(decoding: Data(base64Encoded: $0.rec) ?? Data(), as: UTF8.self) } == ["first", "second"])
            #expect(lines.allSatisfy { $0.from == 1 && $0.flags == ["nobuffer", "permanent"] && $0.control.isEmpty })
        }
    }

    @Test func statsCountEachClientsMessagesAndBytes() throws {
        try withSites(2) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver], name: "counted-receiver")
            let sender = try client(sites.broker(1), name: "counted-sender")
            for index in 0..<50 { try sender.send(control: [1, 2], rec: Array(repeating: 7, count: index), to: 2) }
            let messages = try receiveAll(receiver, count: 50)
            #expect(messages.count == 50)
            #expect(messages.allSatisfy { $0.source == 1 && $0.control == [1, 2] })
            let payload = 50 * 2 + (0..<50).reduce(0, +)
            let one = try sites.broker(1).stats()
            let senderStats = try #require(one.clients.first { $0.name == "counted-sender" })
            #expect(senderStats.messagesSent == 50 && senderStats.bytesSent == payload)
            #expect(senderStats.roles == ["sender"] && senderStats.transport == "shm", "rings are the default")
            #expect(one.peers[0].bytesSent == payload)
            let two = try sites.broker(2).stats()
            let receiverStats = try #require(two.clients.first { $0.name == "counted-receiver" })
            #expect(receiverStats.messagesReceived == 50 && receiverStats.bytesReceived == payload)
            #expect(two.peers[0].messagesReceived == 50 && two.peers[0].bytesReceived == payload)
        }
    }
}
