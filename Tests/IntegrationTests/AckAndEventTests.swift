// Site events to receivers, master announcements shared with peers, and PERMANENT sends that wait for
// their ack policy: none, one, quorum, all; one ack covers every earlier LSN; a missing ack fails the send.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient
import Testing

/// A receiver thread that acknowledges the LSN of every PERMANENT message it gets (like ISPERM would).
final class AckingReceiver: @unchecked Sendable {
    let client: BrokerClient
    private let stop = StopFlag()
    let received = Counter()

    init(_ broker: BrokerProcess, acknowledging: Bool = true) throws {
        client = try BrokerClient(options: BrokerClientOptions(socketPath: broker.socketPath, roles: [.receiver]))
        startThread { [client, stop, received] in
            while !stop.isSet {
                guard let message = try? client.receive(timeout: 0.1) else { continue }
                received.increment()
                if acknowledging && message.flags.contains(.permanent) { try? client.acknowledge(lsn: message.lsn, to: message.source) }
            }
        }
    }

    func close() {
        stop.set()
        client.close()
    }
}

func sender(_ broker: BrokerProcess, policy: AckPolicy, timeout: Double = 1) throws -> BrokerClient {
    var options = BrokerClientOptions(socketPath: broker.socketPath, name: "perm-\(policy)")
    options.ackPolicy = policy
    options.ackTimeout = timeout
    return try BrokerClient(options: options)
}

@Suite struct AckAndEventTests {
    @Test func receiversHearOfPeerSitesGoingDownAndComingBack() throws {
        try withSites(3) { sites in
            let receivers = try [2, 3].map { try client(sites.broker($0), roles: [.receiver], name: "receiver-\($0)") }
            defer { for receiver in receivers { receiver.close() } }
            for site: Int32 in [2, 3] {
                #expect(sites.broker(site).waitForStats(timeout: 10) { $0.groups.contains { $0.receiverClient != nil } })
            }
            let receiver = try client(sites.broker(1), roles: [.receiver])
            let events = SiteEvents(receiver)
            #expect(events.waitFor([2: true, 3: true]), "the current state of every peer first: \(events.seen)")
            sites.broker(3).kill9()
            #expect(events.waitFor([3: false]), "\(events.seen)")
            try sites.broker(3).start()
            let back = try client(sites.broker(3), roles: [.receiver], name: "receiver-3-again")
            defer { back.close() }
            #expect(events.waitFor([3: true]), "\(events.seen)")
        }
    }

    /// A site is up for a group's receivers while a client holds the group's receiver role there: when the
    /// replication process dies and its broker lives on, its peers hear that the site is down, as a closed
    /// direct connection would have told them (before, they heard nothing and held no election). A standby
    /// taking over is no change; a receiver registering again brings the site back.
    @Test func aSiteWhoseReceiverDiesIsDownForItsPeersThoughItsBrokerLives() throws {
        try withSites(3) { sites in
            let receiver2 = try client(sites.broker(2), roles: [.receiver], name: "receiver-2")
            let standby2 = try client(sites.broker(2), roles: [.receiver], name: "standby-2")
            defer { standby2.close() }
            let process3 = try startReceiver(sites.broker(3), timeout: 600, name: "replication-3")
            defer { process3.kill9() }
            #expect(sites.broker(3).waitForStats(timeout: 10) { $0.groups.contains { $0.receiverClient != nil } })
            let receiver = try client(sites.broker(1), roles: [.receiver])
            defer { receiver.close() }
            let events = SiteEvents(receiver)
            #expect(events.waitFor([2: true, 3: true]), "\(events.seen)")
            // Site 3's only receiver is killed; its broker stays up.
            process3.kill9()
            #expect(events.waitFor([3: false]), "\(events.seen)")
            #expect(try sites.broker(1).stats().peers.first { $0.siteID == 3 }?.state == .connected)
            // Site 2's receiver goes and its standby takes over: no event. A message sent at site 2 after the
            // hand-over travels behind any PEER_RECEIVER frame, so an event would have come first.
            receiver2.close()
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.clients.first { $0.name == "standby-2" }?.roles == ["receiver"] })
            let sender2 = try client(sites.broker(2), name: "sender-2")
            defer { sender2.close() }
            try sender2.send(control: [], rec: Array("after the hand-over".utf8), to: 1)
            #expect(events.waitForMessage(), "\(events.seen)")
            #expect(!events.seen.contains(.siteDown(2)), "\(events.seen)")
            // A receiver registers at site 3 again: its peers hear that the site is back.
            let again3 = try client(sites.broker(3), roles: [.receiver], name: "replication-3-again")
            defer { again3.close() }
            #expect(events.waitFor([3: true]), "\(events.seen)")
        }
    }

    @Test func aMasterAnnouncementReachesEveryPeerAndRestartedOnes() throws {
        try withSites(3) { sites in
            let announcer = try client(sites.broker(2), name: "replication-process")
            try announcer.announceMaster(siteID: 2)
            for broker in sites.brokers {
                #expect(broker.waitForStats(timeout: 10) { $0.groups.first { $0.name == "default" }?.master == 2 },
                        "site \(broker.siteID)")
            }
            sites.broker(3).kill9()
            try sites.broker(3).start()
            #expect(sites.broker(3).waitForStats(timeout: 10) { $0.groups.first { $0.name == "default" }?.master == 2 },
                    "a restarted site learns the master when its links come up")
            #expect(sites.broker(1).log.contains("master announced"))
        }
    }

    @Test func permanentSendsWaitForTheirAckPolicy() throws {
        try withSites(3) { sites in
            let acking2 = try AckingReceiver(sites.broker(2))
            let silent3 = try AckingReceiver(sites.broker(3), acknowledging: false)
            defer {
                acking2.close()
                silent3.close()
            }
            // Three sites: quorum and one need one other site, all needs both.
            for (index, policy) in [AckPolicy.none, .one, .quorum].enumerated() {
                let client = try sender(sites.broker(1), policy: policy)
                try client.send(control: [], rec: [UInt8(index)], lsn: LSN(file: 1, offset: UInt32(100 + index)),
                                to: SiteID.broadcast, flags: .permanent)
            }
            let strict = try sender(sites.broker(1), policy: .all, timeout: 0.3)
            let started = Posix.monotonicNanoseconds()
            // The failure says which site acknowledged the LSN in time and which did not.
            #expect(throws: BrokerClientError.notAcknowledged(acked: [2], missing: [3])) {
                try strict.send(control: [], rec: [9], lsn: LSN(file: 1, offset: 200), to: SiteID.broadcast, flags: .permanent)
            }
            let waited = Double(Posix.monotonicNanoseconds() - started) / 1e9
            #expect(waited >= 0.3, "failed after \(waited) s, before its ack timeout")
            // An ordinary message never waits, whatever the policy.
            try strict.send(control: [], rec: [10], lsn: LSN(file: 1, offset: 300), to: SiteID.broadcast)
            let stats = try sites.broker(1).stats()
            #expect(stats.totals.permanentAckFailures == 1)
            #expect(stats.totals.permanentAcked == 2, "one and quorum were acknowledged")
            #expect(stats.clients.first { $0.name == "perm-all" }?.permanentFailed == 1)
            #expect(stats.clients.first { $0.name == "perm-all" }?.ackPolicy == "all")
            #expect(stats.totals.acksReceived >= 3)
        }
    }

    /// Two sites' logs share LSNs but not contents (an old master and a new one after a partition): an ack of
    /// site 3's record at LSN L reaches site 3 alone, and never lets site 1's send of its own L succeed.
    @Test func anAckCountsOnlyAtTheSiteWhoseLogItIsAbout() throws {
        try withSites(3) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver])
            let oldMaster = try sender(sites.broker(1), policy: .one, timeout: 1)
            let newMaster = try sender(sites.broker(3), policy: .one, timeout: 10)
            let lsn = LSN(file: 1, offset: 500)
            let (oldAcked, oldFailed, newAcked) = (Counter(), Counter(), Counter())
            startThread {
                do {
                    try oldMaster.send(control: [], rec: [1], lsn: lsn, to: 2, flags: .permanent)
                    oldAcked.increment()
                } catch { oldFailed.increment() }
            }
            startThread {
                if (try? newMaster.send(control: [], rec: [3], lsn: lsn, to: 2, flags: .permanent)) != nil {
                    newAcked.increment()
                }
            }
            var sources: [Int32] = []
            for _ in 0..<2 { if let message = try receiver.receive(timeout: 10) { sources.append(message.source) } }
            #expect(Set(sources) == [1, 3])
            // Site 2 follows site 3: it acknowledges site 3's record, at the LSN site 1's record also has.
            try receiver.acknowledge(lsn: lsn, to: 3)
            #expect(Deadline.wait(timeout: 10) { newAcked.value == 1 }, "site 3's send was acknowledged")
            #expect(Deadline.wait(timeout: 10) { oldFailed.value == 1 }, "site 1's send failed at its ack timeout")
            #expect(oldAcked.value == 0)
            #expect(try sites.broker(1).stats().totals.acksReceived == 0)
            #expect(try sites.broker(3).stats().totals.acksReceived == 1)
        }
    }

    @Test func oneAckCoversEveryEarlierLSNFromAnyProcess() throws {
        try withSites(2) { sites in
            // Two writer processes' records arrive out of order; the receiver acks only the highest LSN.
            let receiver = try client(sites.broker(2), roles: [.receiver])
            let writerA = try sender(sites.broker(1), policy: .all, timeout: 5)
            let writerB = try sender(sites.broker(1), policy: .all, timeout: 5)
            let results = Counter()
            let failures = Counter()
            for (writer, offset) in [(writerA, UInt32(100)), (writerB, UInt32(200))] {
                startThread {
                    do {
                        try writer.send(control: [], rec: [], lsn: LSN(file: 1, offset: offset), to: 2, flags: .permanent)
                        results.increment()
                    } catch { failures.increment() }
                }
            }
            let first = try #require(try receiver.receive(timeout: 10))
            let second = try #require(try receiver.receive(timeout: 10))
            #expect(Set([first.lsn.offset, second.lsn.offset]) == [100, 200])
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.groups.first?.waitingForAcks == 2 })
            try receiver.acknowledge(lsn: LSN(file: 1, offset: 200), to: first.source)
            #expect(Deadline.wait(timeout: 10) { results.value == 2 })
            #expect(failures.value == 0)
        }
    }
}

/// The site events one receiver has seen, in order, and the state they leave each site in.
final class SiteEvents {
    let client: BrokerClient
    private(set) var seen: [ClientEvent] = []
    private(set) var state: [Int32: Bool] = [:]
    private(set) var messages = 0

    init(_ client: BrokerClient) { self.client = client }

    private func take(timeout: Double) -> Bool {
        guard let event = try? client.nextEvent(timeout: timeout) else { return false }
        seen.append(event)
        switch event {
        case .siteUp(let site): state[site] = true
        case .siteDown(let site): state[site] = false
        case .message: messages += 1
        }
        return true
    }

    /// Takes events until every site in `expected` is in the state given, or 15 s pass.
    func waitFor(_ expected: [Int32: Bool]) -> Bool {
        Deadline.wait(timeout: 15, interval: 0) {
            _ = take(timeout: 0.1)
            return expected.allSatisfy { state[$0.key] == $0.value }
        }
    }

    /// Takes events until a message arrives, or 15 s pass.
    func waitForMessage() -> Bool {
        let before = messages
        return Deadline.wait(timeout: 15, interval: 0) {
            _ = take(timeout: 0.1)
            return messages > before
        }
    }
}
