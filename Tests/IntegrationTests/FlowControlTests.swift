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

    /// 60 MiB of one group queued for a site while it was unreachable (its broker stopped with SIGSTOP, so
    /// its clients stay registered), and held there once it is back (its receiver reads nothing): heartbeats,
    /// another group's messages and the acks of its PERMANENT sends go ahead of all that data, each within its
    /// deadline, and the link stays up. Then the queue drains, all of it.
    @Test func controlFramesAndAnotherGroupOvertake60MiBOfQueuedData() throws {
        try withSites(2) { sites in
            let bulkReceiver = try client(sites.broker(2), roles: [.receiver], name: "bulk-in", group: "bulk",
                                          transport: .sharedMemory, ringBytes: 64 << 10)
            let oltpReceiver = try client(sites.broker(2), roles: [.receiver], name: "oltp-in", group: "oltp")
            #expect(bulkReceiver.waitForReceiverRole(timeout: 10) && oltpReceiver.waitForReceiverRole(timeout: 10))
            var bulkOptions = BrokerClientOptions(socketPath: sites.broker(1).socketPath, group: "bulk", name: "bulk-out")
            bulkOptions.sendTimeout = 60
            let bulkSender = try BrokerClient(options: bulkOptions)
            var options = BrokerClientOptions(socketPath: sites.broker(1).socketPath, group: "oltp", name: "oltp-out")
            options.ackPolicy = .quorum
            options.ackTimeout = 5
            let committer = try BrokerClient(options: options)
            #expect(sites.broker(1).waitForPeers(timeout: 10))
            let stopped = try #require(sites.broker(2).child)
            stopped.signal(SIGSTOP)
            // Three heartbeats of silence: site 1 declares the link down, and a link that is down pauses nobody.
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.peers[0].state != .connected })
            let count = 15_000
            let payload = [UInt8](repeating: 3, count: 4096)
            for index in 0..<count { try bulkSender.send(control: [UInt8(index % 256)], rec: payload, to: 2) }
            #expect(sites.broker(1).waitForStats(timeout: 30) { $0.peers[0].queuedBytes > 60_000_000 })
            stopped.signal(SIGCONT)
            // Site 2's oltp receiver acknowledges every record it gets as durable.
            let acking = Counter()
            startThread {
                while let message = try? oltpReceiver.receive(timeout: 30) {
                    try? oltpReceiver.acknowledge(lsn: message.lsn, to: message.source)
                    acking.increment()
                }
            }
            #expect(sites.broker(1).waitForStats(timeout: 20) { stats in
                guard stats.peers[0].state == .connected,
                      let flow = stats.peers[0].flows.first(where: { $0.group == "bulk" }) else { return false }
                return (flow.window ?? 1) <= 0 && flow.queuedBytes > 50_000_000
            })
            let reconnects = try sites.broker(1).stats().peers[0].reconnects
            for offset in 1...20 {
                let started = Posix.monotonicNanoseconds()
                try committer.send(control: [], rec: [UInt8(offset)], lsn: LSN(file: 1, offset: UInt32(offset)), to: 2,
                                   flags: .permanent)
                let seconds = Double(Posix.monotonicNanoseconds() - started) / 1e9
                #expect(seconds < 2, "a PERMANENT send waited \(seconds) s for its ack")
            }
            #expect(acking.value == 20)
            // More than three heartbeats (600 ms) with the bulk data held: the link stays up.
            let held = try sites.broker(2).stats()
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.uptimeMilliseconds > held.uptimeMilliseconds + 1000 })
            let after = try sites.broker(1).stats()
            #expect(after.peers[0].state == .connected && after.peers[0].reconnects == reconnects)
            #expect((after.peers[0].flows.first { $0.group == "bulk" }?.queuedBytes ?? 0) > 50_000_000)
            let received = try receiveAll(bulkReceiver, count: count, timeout: 30)
            #expect(received.count == count)
            #expect(received.enumerated().allSatisfy { $0.element.control == [UInt8($0.offset % 256)] })
        }
    }
}
