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
            let receiver = try client(sites.broker(1), roles: [.receiver])
            func next() throws -> ClientEvent? { try receiver.nextEvent(timeout: 10) }
            let initial = [try next(), try next()]
            #expect(initial == [.siteUp(2), .siteUp(3)], "the current state of every peer first")
            sites.broker(3).kill9()
            let down = try next()
            #expect(down == .siteDown(3))
            try sites.broker(3).start()
            let up = try next()
            #expect(up == .siteUp(3))
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
            #expect(throws: BrokerClientError.notAcknowledged) {
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
