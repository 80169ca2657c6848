// Application channels and forwarding to the master, with real brokers: channel and replication traffic
// never cross; requests get their own replies; subscribers share a channel round-robin; what cannot be
// delivered comes back as noSubscriber or noMaster; destination master follows the announced master.
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient
import Testing

/// A subscriber thread that answers every request with the payload reversed.
func startEchoing(_ client: BrokerClient, until stop: StopFlag) {
    startThread {
        while !stop.isSet {
            guard let message = try? client.receiveChannelMessage(timeout: 0.1) else { continue }
            if message.isRequest { try? client.reply(to: message, payload: message.payload.reversed()) }
        }
    }
}

@Suite struct ChannelTests {
    @Test func channelAndReplicationTrafficNeverCross() throws {
        try withSites(2) { sites in
            let replication = try client(sites.broker(2), roles: [.receiver], name: "replication")
            let subscriber = try client(sites.broker(2), roles: [.sender], name: "writes-handler")
            try subscriber.subscribe(channel: "writes")
            let sender = try client(sites.broker(1))
            try sender.send(channel: "writes", to: 2, payload: Array("put k v".utf8))
            try sender.send(control: [], rec: Array("log record".utf8), to: 2)
            let onChannel = try #require(try subscriber.receiveChannelMessage(timeout: 10))
            #expect(onChannel.channel == "writes" && onChannel.source == 1 && !onChannel.isRequest)
            #expect(onChannel.payload == Array("put k v".utf8))
            #expect(try replication.receive(timeout: 10)?.rec == Array("log record".utf8))
            #expect(try replication.receive(timeout: 0.3) == nil, "a channel message reached the replication receiver")
            #expect(try subscriber.receiveChannelMessage(timeout: 0.3) == nil, "a replication message reached a channel")
            #expect(try sites.broker(1).stats().totals.channelMessages == 1)
        }
    }

    @Test func concurrentRequestsEachGetTheirOwnReply() throws {
        try withSites(2) { sites in
            let stop = StopFlag()
            defer { stop.set() }
            for index in 0..<2 {
                let handler = try client(sites.broker(2), name: "handler-\(index)")
                try handler.subscribe(channel: "rpc")
                startEchoing(handler, until: stop)
            }
            let requesters = try (0..<2).map { try client(sites.broker(1), name: "requester-\($0)") }
            let failures = Counter()
            let done = Counter()
            for thread in 0..<4 {
                startThread {
                    for index in 0..<25 {
                        let payload = Array("t\(thread)-\(index)".utf8)
                        let answer = try? requesters[thread % 2].request(channel: "rpc", to: 2, payload: payload, timeout: 10)
                        if answer != payload.reversed() { failures.increment() }
                        done.increment()
                    }
                }
            }
            #expect(Deadline.wait(timeout: 60) { done.value == 100 })
            #expect(failures.value == 0)
            let stats = try sites.broker(2).stats().totals
            #expect(stats.channelReplies == 100)
            #expect(try sites.broker(1).stats().totals.channelRequests == 100)
        }
    }

    @Test func subscribersShareAChannelRoundRobin() throws {
        try withSites(1) { sites in
            let first = try client(sites.broker(1), name: "first")
            let second = try client(sites.broker(1), name: "second")
            try first.subscribe(channel: "jobs")
            try second.subscribe(channel: "jobs")
            let sender = try client(sites.broker(1))
            for index in 0..<10 { try sender.send(channel: "jobs", to: 1, payload: [UInt8(index)]) }
            var counts = [0, 0]
            for (slot, subscriber) in [first, second].enumerated() {
                while (try subscriber.receiveChannelMessage(timeout: 0.3)) != nil { counts[slot] += 1 }
            }
            #expect(counts == [5, 5])
        }
    }

    @Test func undeliverableMessagesComeBackToTheSender() throws {
        try withSites(2) { sites in
            let sender = try client(sites.broker(1))
            #expect(throws: BrokerClientError.noSubscriber) { try sender.send(channel: "nobody", to: 2, payload: [1]) }
            #expect(throws: BrokerClientError.noSubscriber) { _ = try sender.request(channel: "nobody", to: 2, payload: [1]) }
            #expect(throws: BrokerClientError.noMaster) { try sender.send(channel: "writes", to: SiteID.master, payload: [1]) }
            #expect(throws: BrokerClientError.unroutable(9)) { try sender.send(channel: "writes", to: 9, payload: [1]) }
            let silent = try client(sites.broker(2), name: "silent")
            try silent.subscribe(channel: "slow")
            #expect(throws: BrokerClientError.timedOut) {
                _ = try sender.request(channel: "slow", to: 2, payload: [1], timeout: 0.3)
            }
            #expect(try sites.broker(2).stats().totals.channelNoSubscriber == 2)
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.totals.channelTimeouts == 1 })
        }
    }

    @Test func theCLIRequestsOnAChannelAndRecvAnswers() throws {
        try withSites(2) { sites in
            let responder = try ChildProcess(name: "responder", executable: Executables.path("repbroker"),
                                             arguments: ["recv", "--socket", sites.broker(2).socketPath, "--channel", "ops",
                                                         "--count", "1", "--timeout", "20"])
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.clients.contains { $0.name == "repbroker-recv-ops" } })
            let (status, output) = try runToExit("repbroker", ["request", "--socket", sites.broker(1).socketPath,
                                                               "--channel", "ops", "--to", "2", "ping over a channel"])
            #expect(status == 0 && output.contains("ping over a channel"))
            #expect(responder.waitForExit(timeout: 10) == 0)
            #expect(responder.lines == ["from=1 ping over a channel"])
            let missing = try runToExit("repbroker", ["request", "--socket", sites.broker(1).socketPath,
                                                      "--channel", "ops", "--to", "master", "x"])
            #expect(missing.status == 1 && missing.output.contains("no master"))
        }
    }

    @Test func destinationMasterFollowsTheAnnouncedMaster() throws {
        try withSites(2) { sites in
            let stop = StopFlag()
            defer { stop.set() }
            for site: Int32 in [1, 2] {
                let handler = try client(sites.broker(site), name: "writes-\(site)")
                try handler.subscribe(channel: "writes")
                startThread {
                    while !stop.isSet {
                        guard let message = try? handler.receiveChannelMessage(timeout: 0.1), message.isRequest else { continue }
                        try? handler.reply(to: message, payload: Array("committed at \(site)".utf8))
                    }
                }
            }
            let replication2 = try client(sites.broker(2), roles: [.receiver], name: "replication-2")
            let writer = try client(sites.broker(1), name: "writer")
            let announcer = try client(sites.broker(2), name: "announcer")
            try announcer.announceMaster(siteID: 2)
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.groups.first?.master == 2 })
            #expect(try writer.request(channel: "writes", to: SiteID.master, payload: [1]) == Array("committed at 2".utf8))
            // Replication messages follow the master too.
            try writer.send(control: [], rec: [7], to: SiteID.master, flags: .permanent)
            #expect(try replication2.receive(timeout: 10)?.rec == [7])
            // When this site is master, the message stays here.
            try announcer.announceMaster(siteID: 1)
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.groups.first?.master == 1 })
            #expect(try writer.request(channel: "writes", to: SiteID.master, payload: [1]) == Array("committed at 1".utf8))
        }
    }

    /// A subscriber whose broker restarts is subscribed again when its client reconnects, the Swift client and
    /// the C client alike (before, the Swift client came back without its subscriptions and channel sends to
    /// its site found no subscriber).
    @Test func subscriptionsComeBackWhenTheBrokerRestarts() throws {
        try withSites(2) { sites in
            let swift = try client(sites.broker(2), name: "swift-subscriber")
            defer { swift.close() }
            try swift.subscribe(channel: "swift-orders")
            let c = try CClientBuild.shared.get().start(["serve", sites.broker(2).socketPath, "default", "c-orders", "2"])
            defer { c.kill9() }
            #expect(c.waitForLines(timeout: 20) { $0.contains("subscribed") })
            let sender = try client(sites.broker(1), name: "orders")
            defer { sender.close() }
            try sender.send(channel: "swift-orders", to: 2, payload: Array("before".utf8), timeout: 10)
            #expect(try swift.receiveChannelMessage(timeout: 10)?.payload == Array("before".utf8))
            try sender.send(channel: "c-orders", to: 2, payload: Array("before".utf8), timeout: 10)
            sites.broker(2).kill9()
            try sites.broker(2).start()
            #expect(sites.broker(2).waitForStats(timeout: 20) { stats in
                ["swift-subscriber", "client_check"].allSatisfy { name in stats.clients.contains { $0.name == name } }
            })
            #expect(sites.broker(1).waitForStats(timeout: 20) { $0.peers.first?.state == .connected })
            try sender.send(channel: "swift-orders", to: 2, payload: Array("after".utf8), timeout: 10)
            #expect(try swift.receiveChannelMessage(timeout: 10)?.payload == Array("after".utf8))
            try sender.send(channel: "c-orders", to: 2, payload: Array("after".utf8), timeout: 10)
            #expect(c.waitForExit(timeout: 20) == 0)
            c.waitForOutputEnd(timeout: 5)
            #expect(c.lines.filter { $0.hasPrefix("channel-message") } == ["channel-message 1 c-orders before",
                                                                           "channel-message 1 c-orders after"])
        }
    }

    /// A send waiting for room in a full ring holds up no control frame: a master announcement and a channel
    /// reply made meanwhile from other threads go at once (before, they waited behind the blocked send).
    @Test func controlFramesGoWhileASendWaitsForRingRoom() throws {
        try withSites(2, extraArguments: congestibleSites) { sites in
            let congestion = try CongestedGroup(sites)
            defer { congestion.close() }
            var options = BrokerClientOptions(socketPath: sites.broker(1).socketPath, name: "blocked")
            options.transport = .sharedMemory
            options.ringBytes = 64 << 10
            options.sendTimeout = 10
            let blocked = try BrokerClient(options: options)
            defer { blocked.close() }
            let sendReturned = StopFlag()
            let sent = Locked(0)
            startThread {
                let rec = [UInt8](repeating: 2, count: 8192)
                while (try? blocked.send(control: [], rec: rec, to: 2)) != nil { sent.withLock { $0 += 1 } }
                sendReturned.set()
            }
            // A ring's worth is in: the next send waits for room the paused broker does not make.
            #expect(Deadline.wait(timeout: 10) { sent.withLock { $0 } >= (64 << 10) / 8256 })
            try blocked.announceMaster(siteID: 1)
            #expect(sites.broker(1).waitForStats(timeout: 5) { $0.groups.first { $0.name == "default" }?.master == 1 })
            #expect(!sendReturned.isSet, "the announcement went while the send still waited")
        }
    }
}
