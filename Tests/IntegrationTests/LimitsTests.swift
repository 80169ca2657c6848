// Bounded memory and visible loss: a full peer queue drops ordinary messages (counted) and refuses
// PERMANENT ones; unknown sites are unroutable; messages wait (bounded) for a receiver; a 64 MiB message
// crosses the mesh intact; a message over the limit is refused before it is sent.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Testing

@Suite struct LimitsTests {
    @Test func aFullPeerQueueDropsOrdinaryMessagesAndRefusesPermanentOnes() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // Site 2 is configured but never started: everything for it stays queued.
        let broker = BrokerProcess(siteID: 1, port: FreePort.next(), directory: directory.path,
                                   peers: [(2, FreePort.next())], extraArguments: ["--peer-queue-bytes", "65536"])
        try broker.start()
        defer { broker.terminate() }
        let sender = try client(broker)
        let payload = Array(repeating: UInt8(1), count: 1000)
        for _ in 0..<100 { try sender.send(control: [], rec: payload, to: 2) }
        #expect(throws: BrokerClientError.refused("a destination's queue is full: the message was queued nowhere")) {
            try sender.send(control: [], rec: payload, to: 2, flags: .permanent)
        }
        #expect(throws: BrokerClientError.refused("a destination's queue is full: the message was queued nowhere")) {
            try sender.send(control: [], rec: payload, to: SiteID.broadcast, flags: [.permanent, .noBuffer])
        }
        #expect(throws: BrokerClientError.unroutable(9)) { try sender.send(control: [], rec: [], to: 9, flags: .permanent) }
        let stats = try broker.stats()
        let peer = try #require(stats.peers.first)
        #expect(peer.state != .connected)
        #expect(peer.messagesSent + peer.dropped == 100)
        #expect(peer.dropped > 0 && peer.refused == 2)
        #expect(peer.queuedBytes <= 65536)
        #expect(stats.totals.unroutable == 1)
    }

    @Test func aSlowConnectedPeerMakesSendersWaitInsteadOfLosingMessages() throws {
        // A long heartbeat keeps the frozen peer's link up: it is slow, not down.
        try withSites(2, extraArguments: ["--heartbeat-ms", "20000"]) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver])
            var options = BrokerClientOptions(socketPath: sites.broker(1).socketPath, name: "pressed")
            options.transport = .sharedMemory
            options.sendTimeout = 60
            let sender = try BrokerClient(options: options)
            sites.broker(2).child?.signal(SIGSTOP)
            defer { sites.broker(2).child?.signal(SIGCONT) }
            let sent = Counter()
            let payload = Array(repeating: UInt8(7), count: 4096)
            startThread {
                for index in 0..<3000 {
                    guard (try? sender.send(control: [UInt8(index % 256)], rec: payload, to: 2)) != nil else { return }
                    sent.increment()
                }
            }
            // The queue to the frozen peer stops near the backpressure mark (256 KiB), and the sender's ring
            // fills behind it: the sender waits.
            #expect(sites.broker(1).waitForStats(timeout: 10) { stats in
                stats.peers[0].queuedBytes > 256 << 10
                    && (stats.clients.first { $0.name == "pressed" }?.ringToBrokerUsed ?? 0) > 512 << 10
            })
            let queued = try sites.broker(1).stats().peers[0].queuedBytes
            #expect(queued < 1 << 20, "queued \(queued) bytes: producers were not paused")
            #expect(sent.value < 3000, "the sender ran ahead of a frozen peer")
            sites.broker(2).child?.signal(SIGCONT)
            let received = try receiveAll(receiver, count: 3000, timeout: 30)
            #expect(received.count == 3000)
            #expect(received.enumerated().allSatisfy { $0.element.control == [UInt8($0.offset % 256)] })
            #expect(try sites.broker(1).stats().peers[0].dropped == 0)
        }
    }

    /// A receiver that stops receiving makes the remote sender wait: the queue in front of the receiver stays
    /// near the mark (its broker withholds credit, the sending broker's flow runs out of window and it pauses
    /// its producers), the link stays up while no data may move for more than three heartbeats, and once the
    /// receiver receives again every message arrives, in order, none dropped.
    @Test func aSlowReceiverMakesRemoteSendersWaitInsteadOfPilingUpOrDropping() throws {
        try withSites(2, extraArguments: ["--heartbeat-ms", "200"]) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver], transport: .sharedMemory)
            #expect(receiver.waitForReceiverRole(timeout: 10))
            var options = BrokerClientOptions(socketPath: sites.broker(1).socketPath, name: "eager")
            options.transport = .sharedMemory
            options.sendTimeout = 60
            let sender = try BrokerClient(options: options)
            let count = 6000
            let sent = Counter()
            let payload = Array(repeating: UInt8(9), count: 4096)
            startThread {
                for index in 0..<count {
                    guard (try? sender.send(control: [UInt8(index % 256)], rec: payload, to: 2)) != nil else { return }
                    sent.increment()
                }
            }
            // 24 MiB sent at a receiver that takes nothing: its ring (1 MiB) fills, then the broker's queue for it
            // to the mark, then the link, then the sender's own ring.
            #expect(sites.broker(1).waitForStats(timeout: 20) { stats in
                (stats.clients.first { $0.name == "eager" }?.ringToBrokerUsed ?? 0) > 512 << 10
            })
            let receiverQueue = try #require(try sites.broker(2).stats().clients.first { $0.roles == ["receiver"] }).queuedBytes
            #expect(receiverQueue < 1 << 20, "\(receiverQueue) bytes queued in front of the receiver")
            #expect(sent.value < count)
            // The sending broker's flow to site 2 is out of window, and site 2 owes it credit it holds back.
            #expect(sites.broker(1).waitForStats(timeout: 20) { stats in
                guard let flow = stats.peers[0].flows.first(where: { $0.group == "default" && $0.trafficClass == "replication" })
                else { return false }
                return (flow.window ?? 1) <= 0 && flow.paused && flow.queuedBytes > 0
            })
            #expect(sites.broker(2).waitForStats(timeout: 20) { ($0.peers[0].flows.first { $0.group == "default" }?.owed ?? 0) > 0 })
            let held = try sites.broker(2).stats()
            // More than three heartbeats (600 ms) of that: the link stays up (heartbeats go on while data waits).
            let before = held.peers[0].reconnects
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.uptimeMilliseconds > held.uptimeMilliseconds + 1000 })
            #expect(try sites.broker(2).stats().peers[0].state == .connected)
            var next = 0
            var inOrder = true
            let deadline = Posix.monotonicNanoseconds() + 60_000_000_000
            while next < count, Posix.monotonicNanoseconds() < deadline {
                try receiver.receiveAll(timeout: 5) { message in
                    if message.control.count != 1 || message.control[0] != UInt8(next % 256) { inOrder = false }
                    next += 1
                }
            }
            #expect(next == count && inOrder)
            let after = try sites.broker(2).stats()
            #expect(after.peers[0].reconnects == before && after.totals.dropped == 0)
            #expect(try sites.broker(1).stats().peers[0].dropped == 0)
        }
    }

    /// Sender processes that exit right after their last send, into a receiver that keeps its queue over the
    /// mark: every record they published is handled when they are gone, whatever the queues' state.
    @Test func sendersThatExitBesideACongestedReceiverLoseNothing() throws {
        try withSites(1) { sites in
            let broker = sites.broker(1)
            let receiver = try client(broker, roles: [.receiver], transport: .sharedMemory, ringBytes: 4096)
            #expect(receiver.waitForReceiverRole(timeout: 10))
            let payload = String(repeating: "x", count: 500)
            let senders = try (0..<4).map { index in
                try runSender(broker, to: "1", lines: (0..<1500).map { "s\(index)-\($0)-\(payload)" }, name: "exiting-\(index)",
                              transport: "shm")
            }
            var received = 0
            let deadline = Posix.monotonicNanoseconds() + 60_000_000_000
            while received < 6000, Posix.monotonicNanoseconds() < deadline {
                // A slow receiver: a small batch, then a pause, so its queue stays over the mark.
                received += try receiver.receiveAll(timeout: 5) { _ in }
                usleep(2000)
            }
            for sender in senders { #expect(sender.waitForExit(timeout: 60) == 0, "\(sender.name)") }
            #expect(received == 6000)
            #expect(try broker.stats().totals.dropped == 0)
        }
    }

    @Test func messagesWaitForAReceiverWithinTheInboundLimit() throws {
        try withSites(2, extraArguments: ["--heartbeat-ms", "200", "--inbound-queue-bytes", "65536"]) { sites in
            let sender = try client(sites.broker(1))
            let payload = Array(repeating: UInt8(3), count: 1000)
            for index in 0..<100 { try sender.send(control: [UInt8(index)], rec: payload, to: 2) }
            #expect(sites.broker(2).waitForStats(timeout: 10) { stats in
                let group = stats.groups.first { $0.name == "default" }
                return (group?.pendingMessages ?? 0) + (group?.dropped ?? 0) == 100
            })
            let waiting = try #require(try sites.broker(2).stats().groups.first { $0.name == "default" })
            #expect(waiting.pendingMessages > 0 && waiting.dropped > 0)
            let receiver = try client(sites.broker(2), roles: [.receiver])
            let received = try receiveAll(receiver, count: waiting.pendingMessages)
            #expect(received.map { Int($0.control[0]) } == Array(0..<waiting.pendingMessages), "oldest first, in order")
            #expect(try receiver.receive(timeout: 0.3) == nil)
        }
    }

    @Test func a64MiBMessageCrossesTheMeshIntact() throws {
        try withSites(2) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver])
            let sender = try client(sites.broker(1))
            let control = (0..<1024).map { UInt8(truncatingIfNeeded: $0 * 7) }
            let rec = patterned(count: (64 << 20) - 1024)
            try sender.send(control: control, rec: rec, lsn: LSN(file: 3, offset: 99), to: 2, flags: .permanent)
            let message = try #require(try receiver.receive(timeout: 60))
            #expect(message.control == control)
            #expect(message.rec.count == rec.count)
            #expect(sameBytes(message.rec, rec))
            #expect(message.lsn == LSN(file: 3, offset: 99) && message.flags == .permanent && message.source == 1)
            #expect(throws: BrokerClientError.messageTooLarge(size: (64 << 20) + 1, limit: 64 << 20)) {
                try sender.send(control: control + [0], rec: rec, to: 2)
            }
        }
    }

    @Test func theBrokersMessageLimitIsEnforcedOnTheWire() throws {
        try withSites(1, extraArguments: ["--max-message-bytes", "1000"]) { sites in
            let broker = sites.broker(1)
            let sender = try client(broker)
            #expect(sender.maxMessage == 1000)
            #expect(throws: BrokerClientError.messageTooLarge(size: 1001, limit: 1000)) {
                try sender.send(control: [], rec: Array(repeating: 0, count: 1001), to: 1)
            }
            // A client that ignores the limit is cut off with a reason; the broker stays up.
            let raw = try RawConnection.unix(broker.socketPath)
            let register = FrameParser.encode(.register, body: RegisterFrame(roles: .sender, pid: 1, group: "default",
                                                                               name: "greedy").body)
            raw.write(register + header(type: FrameType.message.rawValue, length: 40 + 5000))
            let answer = raw.readUntilClosed()
            raw.close()
            #expect(RawConnection.errorReasons(answer ?? []).contains { $0.contains("exceeds the limit") })
            #expect(try broker.stats().totals.badFrames == 1)
        }
    }
}

/// Bytes that differ at every offset in a way a shifted or truncated copy would not match.
func patterned(count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let words = count / 8
        UnsafeMutableRawBufferPointer(buffer).withMemoryRebound(to: UInt64.self) { wordsBuffer in
            for index in 0..<words {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                wordsBuffer[index] = state
            }
        }
        for index in (words * 8)..<count { buffer[index] = UInt8(truncatingIfNeeded: index) }
        initialized = count
    }
}

func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.elementsEqual(y) } }
}
