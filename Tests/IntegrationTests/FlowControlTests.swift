// Groups that share a peer link do not hold each other up (PROTOCOL.md, "Flow control"): a group whose
// receiver stopped is held back at its senders' site, by credit, while another group's messages and its
// senders go on; the stalled group loses nothing once its receiver takes messages again.
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Testing

@Suite struct FlowControlTests {
    @Test func aStalledGroupDoesNotHoldUpAnotherGroupOnTheSameLink() throws {
        try withSites(2) { sites in
            let bulkReceiver = try client(sites.broker(2), roles: [.receiver], name: "bulk-in", group: "bulk",
                                          transport: .sharedMemory)
            let oltpReceiver = try client(sites.broker(2), roles: [.receiver], name: "oltp-in", group: "oltp")
            #expect(bulkReceiver.waitForReceiverRole(timeout: 10) && oltpReceiver.waitForReceiverRole(timeout: 10))
            var options = BrokerClientOptions(socketPath: sites.broker(1).socketPath, group: "bulk", name: "bulk-out")
            options.transport = .sharedMemory
            options.sendTimeout = 120
            let bulkSender = try BrokerClient(options: options)
            let oltpSender = try client(sites.broker(1), name: "oltp-out", group: "oltp")
            let count = 4000
            let sent = Counter()
            let payload = [UInt8](repeating: 7, count: 4096)
            startThread {
                for index in 0..<count {
                    guard (try? bulkSender.send(control: [UInt8(index % 256)], rec: payload, to: 2)) != nil else { return }
                    sent.increment()
                }
            }
            // The bulk group's receiver takes nothing: its flow at site 1 runs out of window, its sender pauses.
            #expect(sites.broker(1).waitForStats(timeout: 30) { stats in
                guard let flow = stats.peers[0].flows.first(where: { $0.group == "bulk" }) else { return false }
                return (flow.window ?? 1) <= 0 && flow.paused
            })
            #expect(sent.value < count)
            // Meanwhile the other group's messages cross the same link, one after another, each in time.
            for index in 0..<50 {
                try oltpSender.send(control: [], rec: Array("oltp \(index)".utf8), to: 2)
                let message = try oltpReceiver.receive(timeout: 10)
                #expect(message.map { String(decoding: $0.rec, as: UTF8.self) } == "oltp \(index)")
            }
            let stalled = try sites.broker(1).stats()
            let oltpFlow = try #require(stalled.peers[0].flows.first { $0.group == "oltp" })
            #expect(!oltpFlow.paused && oltpFlow.framesSent >= 50)
            #expect(try #require(stalled.peers[0].flows.first { $0.group == "bulk" }).paused)
            // The bulk receiver wakes up: everything arrives, in order, nothing dropped anywhere.
            let received = try receiveAll(bulkReceiver, count: count, timeout: 30)
            #expect(received.count == count)
            #expect(received.enumerated().allSatisfy { $0.element.control == [UInt8($0.offset % 256)] })
            for broker in [sites.broker(1), sites.broker(2)] {
                let stats = try broker.stats()
                #expect(stats.totals.dropped == 0 && stats.peers[0].reconnects == 0)
            }
        }
    }
}
