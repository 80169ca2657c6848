// What a SEND_RESULT promises: status 0 means queued for every destination; a message dropped anywhere never
// gets it. And a producer that registers while its group is congested pauses like every other producer.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Testing

@Suite struct SendResultTests {
    /// Site 3 is down and its queue fills: each message asking for a result is told what happened to it, and
    /// the statuses agree with the broker's drop counters.
    @Test func aDroppedMessageIsNeverReportedQueued() throws {
        try withSites(3, extraArguments: ["--heartbeat-ms", "200", "--peer-queue-bytes", "65536"]) { sites in
            let receiver2 = try client(sites.broker(2), roles: [.receiver])
            defer { receiver2.close() }
            sites.broker(3).terminate()
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.peers.first { $0.siteID == 3 }?.state != .connected })
            let raw = try RawClient(socketPath: sites.broker(1).socketPath)
            defer { raw.close() }
            let rec = Array(repeating: UInt8(7), count: 1000)
            // 100 unicasts to the down site (64 KiB holds about 60 of them), then 20 broadcasts.
            for sequence in UInt64(1)...100 { raw.send(sequence: sequence, to: 3, rec: rec) }
            for sequence in UInt64(101)...120 { raw.send(sequence: sequence, to: SiteID.broadcast, rec: rec) }
            #expect(Deadline.wait(timeout: 10) {
                raw.flush()
                try? raw.pump(waitMilliseconds: 20)
                return raw.results.count == 120
            })
            let unicast = (1...100).compactMap { raw.results[UInt64($0)] }
            let broadcast = (101...120).compactMap { raw.results[UInt64($0)] }
            let stats = try sites.broker(1).stats()
            let dropped3 = try #require(stats.peers.first { $0.siteID == 3 }).dropped
            #expect(unicast.filter { $0 == .ok }.count > 0 && unicast.filter { $0 == .queueFull }.count > 0)
            #expect(unicast.allSatisfy { $0 == .ok || $0 == .queueFull })
            #expect(broadcast.allSatisfy { $0 == .partlyQueued }, "queued for site 2, dropped at site 3: \(broadcast)")
            #expect(dropped3 == unicast.filter { $0 == .queueFull }.count + broadcast.count)
            #expect(try receiveAll(receiver2, count: 20).count == 20, "site 2 got every broadcast")
        }
    }

    /// A receiver that stops reading congests its group at the senders' site. A producer that registers then
    /// is paused at once (before, it was never paused: its 600 sends overran the peer queue and 166 of them
    /// were dropped, each reported queued). Once the receiver reads again, every message arrives, in order.
    @Test func aProducerThatRegistersWhileItsGroupIsCongestedIsPaused() throws {
        try withSites(2, extraArguments: ["--heartbeat-ms", "200", "--peer-queue-bytes", "2097152",
                                          "--flow-window-bytes", "65536"]) { sites in
            let receiver = try CongestedGroup.slowReceiver(sites.broker(2))
            defer { receiver.close() }
            // Producer A fills the path until its group is congested and it is paused (its sends then block).
            let first = try client(sites.broker(1), name: "first", transport: .unixSocket)
            defer { first.close() }
            let rec = Array(repeating: UInt8(1), count: 4096)
            let firstSent = Locked(0)
            let sender = Thread {
                for index in 0..<2000 {
                    guard (try? first.send(control: [0, UInt8(index & 0xFF)], rec: rec, to: 2)) != nil else { break }
                    firstSent.withLock { $0 += 1 }
                }
            }
            sender.start()
            let site1 = sites.broker(1)
            #expect(site1.waitForStats(timeout: 20) { $0.clients.first { $0.name == "first" }?.paused == true },
                    "the first producer is paused")
            // Producer B arrives now: paused at registration, whatever it writes waits in its socket.
            let late = try RawClient(socketPath: site1.socketPath, name: "late")
            defer { late.close() }
            for sequence in UInt64(1)...600 { late.send(sequence: sequence, to: 2, rec: rec) }
            #expect(site1.waitForStats(timeout: 10) { $0.clients.first { $0.name == "late" }?.paused == true },
                    "the late producer is paused")
            try late.pump(waitMilliseconds: 200)
            var stats = try site1.stats()
            #expect(stats.totals.dropped == 0, "nothing dropped while paused")
            #expect(try #require(stats.peers.first).queuedBytes <= 1 << 20, "the flow stays near its mark")
            #expect(late.unwrittenBytes > 0, "the broker stopped reading the late producer")
            // The receiver reads again: everything flows, in order, and every result is 0.
            var fromLate: [UInt64] = []
            var fromFirst = 0
            let done = Deadline.wait(timeout: 60, interval: 0.001) {
                late.flush()
                try? late.pump()
                while let message = try? receiver.receive(timeout: 0.01) {
                    if message.control.isEmpty { fromLate.append(UInt64(fromLate.count + 1)) } else { fromFirst += 1 }
                }
                return fromLate.count == 600 && late.results.count == 600
            }
            #expect(done, "late: \(fromLate.count) received, \(late.results.count) results")
            #expect(late.results.values.allSatisfy { $0 == .ok })
            sender.cancel()
            first.close()
            stats = try site1.stats()
            #expect(stats.totals.dropped == 0)
        }
    }
}
