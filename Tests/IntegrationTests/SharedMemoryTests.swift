// Shared-memory rings with real processes: order across ring and socket for messages too large for the
// ring (with receive and with receiveAll, whose thread drains the ring itself while the reader thread
// takes over whenever it pauses), a PERMANENT send inside a receiveAll callback and from another thread
// while a callback runs long, receiveAll carrying on across a broker restart, teardown when a client or the broker is killed with -9 (no mapping, descriptor or /dev/shm entry
// left), the broker serving new clients afterwards, fallback when the broker offers no rings, and an idle
// broker with many ring clients staying idle.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient
import Synchronization
import Testing

/// Lines of /proc/PID/maps that map a client segment.
func ringMappings(_ pid: Int32) -> [String] {
    // Read to the end: /proc files report size 0, and a sanitizer's process has thousands of mappings.
    let data = FileHandle(forReadingAtPath: "/proc/\(pid)/maps")?.readDataToEndOfFile() ?? Data()
    return String(decoding: data, as: UTF8.self).split(separator: "\n")
        .filter { $0.contains("memfd:repbroker-client") }.map(String.init)
}

func shmEntries() -> Set<String> {
    Set(((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.contains("repbroker") })
}


@Suite struct SharedMemoryTests {
    @Test func messagesTooLargeForTheRingKeepTheirOrderBothWays() throws {
        try withSites(2) { sites in
            // 4 KiB rings: anything over ~1 KiB travels in parts (FRAGMENT records).
            let receiver = try client(sites.broker(2), roles: [.receiver], transport: .sharedMemory, ringBytes: 4096)
            let sender = try client(sites.broker(1), transport: .sharedMemory, ringBytes: 4096)
            let count = 400
            for index in 0..<count {
                let size = index % 3 == 0 ? 3000 + index : 10 + index % 50
                var rec = Array(repeating: UInt8(truncatingIfNeeded: index), count: size)
                rec[0] = UInt8(index % 251)
                try sender.send(control: Array("\(index)".utf8), rec: rec, to: 2, flags: index % 7 == 0 ? .permanent : [])
            }
            let received = try receiveAll(receiver, count: count)
            #expect(received.map { Int(String(decoding: $0.control, as: UTF8.self)) ?? -1 } == Array(0..<count))
            for (index, message) in received.enumerated() {
                #expect(message.rec.count == (index % 3 == 0 ? 3000 + index : 10 + index % 50))
                #expect(message.rec.first == UInt8(index % 251))
            }
            let stats = try sites.broker(2).stats()
            let receiverStats = try #require(stats.clients.first { $0.roles == ["receiver"] })
            #expect(receiverStats.transport == "shm" && receiverStats.ringBytes == 4096)
            #expect(receiverStats.ringToClientUsed != nil)
        }
    }

    /// Two streams (one through a peer link, one local) into a 4 KiB ring, every 37th message too large for
    /// one record, with the receiver pausing now and then so the ring fills and the broker queues: both
    /// arrive complete and each in order.
    @Test func twoStreamsWithLargeMessagesArriveInOrderThroughASmallRing() throws {
        try withSites(2) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver], transport: .sharedMemory, ringBytes: 4096)
            let remote = try client(sites.broker(1), transport: .sharedMemory, ringBytes: 4096)
            let local = try client(sites.broker(2), transport: .sharedMemory, ringBytes: 4096)
            let perSender = 3000
            let failures = Locked<[String]>([])
            let senders = [(remote, Int32(1)), (local, Int32(2))].map { sender, site in
                Thread {
                    do {
                        for index in 0..<perSender {
                            // Every 37th is too large for one record of a 4 KiB ring: it travels in parts.
                            let rec = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: index % 37 == 0 ? 2000 : 16)
                            try sender.send(control: [], rec: rec, lsn: LSN(file: UInt32(site), offset: UInt32(index)), to: 2)
                        }
                    } catch { failures.withLock { $0.append("sender at site \(site): \(error)") } }
                }
            }
            senders.forEach { $0.start() }
            var next: [Int32: UInt32] = [1: 0, 2: 0]
            var calls = 0
            let deadline = Posix.monotonicNanoseconds() + 30_000_000_000
            while next.values.contains(where: { $0 < UInt32(perSender) }), Posix.monotonicNanoseconds() < deadline {
                calls += 1
                // A pause now and then: the ring fills meanwhile and the broker queues behind it.
                if calls % 50 == 0 { usleep(3000) }
                try receiver.receiveAll(timeout: 1) { message in
                    let site = Int32(message.lsn.file)
                    let expected = next[site, default: 0]
                    let size = expected % 37 == 0 ? 2000 : 16
                    if message.source != site || message.lsn.offset != expected || message.rec.count != size
                        || message.rec.contains(where: { $0 != UInt8(truncatingIfNeeded: expected) }) {
                        failures.withLock {
                            $0.append("site \(site): expected #\(expected), got #\(message.lsn.offset) of \(message.rec.count) bytes")
                        }
                    }
                    next[site] = message.lsn.offset + 1
                }
            }
            #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { Array($0.prefix(5)) })")
            #expect(next == [1: UInt32(perSender), 2: UInt32(perSender)])
        }
    }

    @Test func aKilledClientsRingsAreTornDownAndTheBrokerServesOthers() throws {
        let before = shmEntries()
        try withSites(2) { sites in
            let site1 = sites.broker(1)
            let brokerPID = try #require(site1.child?.pid)
            let receiver = try client(sites.broker(2), roles: [.receiver], transport: .sharedMemory)
            let doomed = try ChildProcess(name: "doomed", executable: Executables.path("repbroker"),
                                          arguments: ["send", "--socket", site1.socketPath, "--to", "2", "--transport", "shm",
                                                      "--name", "doomed"],
                                          stderrPath: site1.directory + "/doomed.err")
            for index in 0..<200 { doomed.write("doomed-\(index)\n") }
            #expect(site1.waitForStats(timeout: 10) { $0.clients.contains { $0.name == "doomed" && $0.transport == "shm" } })
            #expect(Deadline.wait(timeout: 10) { ringMappings(brokerPID).count == 1 }, "the broker maps the client's segment")
            doomed.kill9()
            #expect(site1.waitForStats(timeout: 10) { !$0.clients.contains { $0.name == "doomed" } })
            #expect(Deadline.wait(timeout: 10) { ringMappings(brokerPID).isEmpty }, "the segment is unmapped")
            #expect(shmEntries() == before, "nothing was ever named in /dev/shm")

            // Messages the doomed client published before dying arrive once and in order; then others are served.
            var doomedMessages: [String] = []
            while let message = try receiver.receive(timeout: 0.5) { doomedMessages.append(String(decoding: message.rec, as: UTF8.self)) }
            #expect(doomedMessages == (0..<doomedMessages.count).map { "doomed-\($0)" })
            let fresh = try client(site1, name: "fresh", transport: .sharedMemory)
            try fresh.send(control: [], rec: Array("after".utf8), to: 2)
            #expect(try receiver.receive(timeout: 10)?.rec == Array("after".utf8))
        }
    }

    @Test func aKilledBrokerLeavesNothingAndItsRestartGivesFreshRings() throws {
        let before = shmEntries()
        try withSites(1) { sites in
            let broker = sites.broker(1)
            let receiver = try client(broker, roles: [.receiver], transport: .sharedMemory)
            let sender = try client(broker, transport: .sharedMemory)
            try sender.send(control: [], rec: [1], to: 1)
            #expect(try receiver.receive(timeout: 10)?.rec == [1])
            broker.kill9()
            #expect(Deadline.wait(timeout: 5) { !sender.isConnected && !receiver.isConnected })
            try broker.start()
            #expect(sender.waitForConnection(timeout: 10) && receiver.waitForConnection(timeout: 10))
            #expect(receiver.waitForReceiverRole(timeout: 10))
            try sender.send(control: [], rec: [2], to: 1)
            #expect(try receiver.receive(timeout: 10)?.rec == [2])
            #expect(try broker.stats().clients.allSatisfy { $0.transport == "shm" })
            #expect(shmEntries() == before)
        }
    }

    /// A receiveAll callback that sends PERMANENT (waiting for its SEND_RESULT on the socket while its own
    /// small ring fills behind it, some messages in parts) gets its result, its message's view stays intact
    /// meanwhile, and both streams keep their order.
    @Test func aPermanentSendInsideReceiveAllGetsItsResult() throws {
        try withSites(1) { sites in
            var options = BrokerClientOptions(socketPath: sites.broker(1).socketPath, name: "echo", roles: [.sender, .receiver])
            options.transport = .sharedMemory
            options.ringBytes = 4096
            options.sendTimeout = 3
            let receiver = try BrokerClient(options: options)
            let sender = try client(sites.broker(1), transport: .sharedMemory)
            #expect(receiver.waitForReceiverRole(timeout: 10))
            let count: UInt32 = 200
            // Every 25th is too large for one record of the 4 KiB ring: it travels in parts.
            func size(_ index: UInt32) -> Int { index % 25 == 0 ? 2000 : 1 }
            for index in 0..<count {
                try sender.send(control: [], rec: Array(repeating: 7, count: size(index)), lsn: LSN(file: 1, offset: index), to: 1)
            }
            var next: [UInt32: UInt32] = [1: 0, 2: 0]
            var failures: [String] = []
            let deadline = Posix.monotonicNanoseconds() + 30_000_000_000
            while next.values.contains(where: { $0 < count }), failures.isEmpty, Posix.monotonicNanoseconds() < deadline {
                try receiver.receiveAll(timeout: 1) { message in
                    let stream = message.lsn.file
                    if message.lsn.offset != next[stream, default: 0] {
                        failures.append("stream \(stream): expected #\(next[stream, default: 0]), got #\(message.lsn.offset)")
                    }
                    next[stream] = message.lsn.offset + 1
                    guard stream == 1, failures.isEmpty else { return }
                    do {
                        try receiver.send(control: [], rec: [8], lsn: LSN(file: 2, offset: message.lsn.offset), to: 1,
                                          flags: .permanent)
                        // The view is still this message's, though the broker wrote on meanwhile.
                        if message.rec.count != size(message.lsn.offset) || message.rec.contains(where: { $0 != 7 }) {
                            failures.append("#\(message.lsn.offset) changed under its view")
                        }
                    } catch {
                        failures.append("permanent send #\(message.lsn.offset) inside the callback: \(error)")
                    }
                }
            }
            #expect(failures.isEmpty, "\(failures.prefix(5))")
            #expect(next == [1: count, 2: count])
        }
    }

    /// A receiveAll callback that runs long does not hold up another thread's PERMANENT send while messages
    /// pile up in the ring behind it: the result comes by the socket.
    @Test func aSlowReceiveAllCallbackDoesNotHoldUpAnotherThreadsSendResult() throws {
        try withSites(1) { sites in
            var options = BrokerClientOptions(socketPath: sites.broker(1).socketPath, name: "slow", roles: [.sender, .receiver])
            options.transport = .sharedMemory
            options.sendTimeout = 2
            let slow = try BrokerClient(options: options)
            let feeder = try client(sites.broker(1), transport: .sharedMemory)
            #expect(slow.waitForReceiverRole(timeout: 10))
            let stop = Atomic<Bool>(false)
            let handed = Atomic<Int>(0)
            let receiving = Thread {
                while !stop.load(ordering: .relaxed) {
                    _ = try? slow.receiveAll(timeout: 0.2) { _ in
                        handed.add(1, ordering: .relaxed)
                        // Work that takes 50 ms a message: 100 of them would outlast the send timeout.
                        if !stop.load(ordering: .relaxed) { usleep(50_000) }
                    }
                }
            }
            receiving.start()
            defer { stop.store(true, ordering: .relaxed) }
            // The first message puts the receiving thread inside a callback; the rest pile up in the ring.
            try feeder.send(control: [], rec: [1], lsn: LSN(file: 1, offset: 0), to: 1)
            #expect(Deadline.wait(timeout: 10) { handed.load(ordering: .relaxed) >= 1 })
            for index in 1..<100 {
                try feeder.send(control: [], rec: [1], lsn: LSN(file: 1, offset: UInt32(index)), to: 1)
            }
            var failure: BrokerClientError?
            do throws(BrokerClientError) {
                try slow.send(control: [], rec: [2], lsn: LSN(file: 2, offset: 0), to: 1, flags: .permanent)
            } catch {
                failure = error
            }
            #expect(failure == nil, "\(String(describing: failure)) after \(handed.load(ordering: .relaxed)) callbacks")
        }
    }

    /// A thread that receives with receiveAll (reading the ring itself) while the broker is killed with -9
    /// and restarted carries on with the fresh rings: nothing out of order or twice, and what is sent after
    /// the restart arrives.
    @Test func receiveAllCarriesOnAcrossABrokerRestart() throws {
        try withSites(1) { sites in
            let broker = sites.broker(1)
            let receiver = try client(broker, roles: [.receiver], transport: .sharedMemory)
            let sender = try client(broker, transport: .sharedMemory)
            struct Seen { var last: UInt32 = 0, count = 0, disorder = 0 }
            let seen = Locked(Seen())
            let stop = Atomic<Bool>(false)
            let receiving = Thread {
                while !stop.load(ordering: .relaxed) {
                    _ = try? receiver.receiveAll(timeout: 0.2) { message in
                        seen.withLock {
                            if message.lsn.offset <= $0.last { $0.disorder += 1 }
                            $0.last = message.lsn.offset
                            $0.count += 1
                        }
                    }
                }
            }
            receiving.start()
            defer { stop.store(true, ordering: .relaxed) }
            var sequence: UInt32 = 0
            func sendSome(_ count: Int) {
                for _ in 0..<count {
                    sequence += 1
                    try? sender.send(control: [], rec: [1, 2, 3], lsn: LSN(file: 1, offset: sequence), to: 1)
                }
            }
            sendSome(2000)
            #expect(Deadline.wait(timeout: 10) { seen.withLock { $0.count } == 2000 })
            broker.kill9()
            #expect(Deadline.wait(timeout: 5) { !sender.isConnected && !receiver.isConnected })
            try broker.start()
            #expect(sender.waitForConnection(timeout: 10) && receiver.waitForConnection(timeout: 10))
            #expect(receiver.waitForReceiverRole(timeout: 10))
            let restartedAt = sequence
            sendSome(2000)
            #expect(Deadline.wait(timeout: 10) { seen.withLock { $0.last } == sequence })
            let final = seen.withLock { $0 }
            #expect(final.disorder == 0 && final.count == 4000, "after restart from #\(restartedAt): \(final)")
        }
    }

    /// One thread receives at a time: a receive from inside a receiveAll callback, or from a second thread
    /// while one is waiting, is refused with a reason; the waiting receiver then gets its message.
    @Test(arguments: [ClientTransport.sharedMemory, .unixSocket])
    func aSecondReceiverIsRefusedWithAReason(transport: ClientTransport) throws {
        try withSites(1) { sites in
            let receiver = try client(sites.broker(1), roles: [.receiver], transport: transport)
            let sender = try client(sites.broker(1), transport: transport)
            #expect(receiver.waitForReceiverRole(timeout: 10))
            try sender.send(control: [], rec: [1], to: 1)
            var inner: BrokerClientError?
            let count = try receiver.receiveAll(timeout: 10) { _ in
                do throws(BrokerClientError) { _ = try receiver.receive(timeout: 0) } catch { inner = error }
            }
            #expect(count == 1)
            guard case .invalidArgument(let reason)? = inner else {
                Issue.record("a receive inside the callback gave \(String(describing: inner))")
                return
            }
            #expect(reason.contains("one thread receives at a time"))
            let stop = Atomic<Bool>(false)
            let waiting = Thread { while !stop.load(ordering: .relaxed) { _ = try? receiver.receive(timeout: 0.5) } }
            waiting.start()
            defer { stop.store(true, ordering: .relaxed) }
            // While that thread waits, a second receiver is refused.
            var refused = false
            #expect(Deadline.wait(timeout: 10) {
                do throws(BrokerClientError) { _ = try receiver.receive(timeout: 0) } catch .invalidArgument { refused = true } catch {}
                return refused
            })
        }
    }

    /// Messages larger than the ring itself (default 1 MiB rings, messages up to 2.5 MiB) cross a peer link in
    /// both directions' rings, from two sending threads, with every byte as sent and each stream in order.
    @Test func messagesLargerThanTheRingCrossAPeerLinkIntact() throws {
        try withSites(2) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver], transport: .sharedMemory)
            #expect(receiver.waitForReceiverRole(timeout: 10))
            let senders = try (0..<2).map { _ in try client(sites.broker(1), transport: .sharedMemory) }
            let perSender = 8
            // Made once, before the threads start: the same bytes to send and to compare with.
            let messages: [[[UInt8]]] = (0..<2).map { stream in
                (0..<perSender).map { index in
                    let size = 1 + (index * 2_654_435 + stream * 977_123) % (5 << 19)
                    var bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: index + 16 * stream), count: size)
                    for position in stride(from: 0, to: size, by: 4093) { bytes[position] = UInt8(truncatingIfNeeded: position / 4093) }
                    return bytes
                }
            }
            let threads = senders.enumerated().map { offset, sender in
                Thread {
                    for index in 0..<perSender {
                        try? sender.send(control: [UInt8(offset)], rec: messages[offset][index],
                                         lsn: LSN(file: UInt32(offset + 1), offset: UInt32(index)), to: 2,
                                         flags: index % 3 == 0 ? .permanent : [])
                    }
                }
            }
            threads.forEach { $0.start() }
            var next: [UInt32: UInt32] = [1: 0, 2: 0]
            var failures: [String] = []
            while next.values.contains(where: { $0 < UInt32(perSender) }), failures.count < 5,
                  let message = try receiver.receive(timeout: 60) {
                let stream = message.lsn.file, index = message.lsn.offset
                if index != next[stream] { failures.append("stream \(stream): #\(index) after #\(next[stream] ?? 0)") }
                if stream < 1 || stream > 2 || index >= UInt32(perSender) || message.rec != messages[Int(stream) - 1][Int(index)] {
                    failures.append("stream \(stream) #\(index): \(message.rec.count) bytes differ from what was sent")
                }
                next[stream] = index + 1
            }
            #expect(failures.isEmpty, "\(failures)")
            #expect(next == [1: UInt32(perSender), 2: UInt32(perSender)])
        }
    }

    /// A send that times out partway through a message in parts leaves parts in the ring that the broker would
    /// join the next message onto: the client drops that connection and reconnects, so the next message
    /// arrives and the broker sees no bad frame.
    @Test func aSendThatStopsPartwayThroughAMessageInPartsCostsOnlyThatConnection() throws {
        try withSites(1) { sites in
            let broker = sites.broker(1)
            let receiver = try client(broker, roles: [.receiver], transport: .sharedMemory)
            var options = BrokerClientOptions(socketPath: broker.socketPath, name: "stopped")
            options.transport = .sharedMemory
            options.ringBytes = 4096
            options.sendTimeout = 0.5
            let sender = try BrokerClient(options: options)
            broker.child?.signal(SIGSTOP)
            var failure: BrokerClientError?
            do throws(BrokerClientError) {
                try sender.send(control: [], rec: [UInt8](repeating: 1, count: 100_000), to: 1)
            } catch { failure = error }
            broker.child?.signal(SIGCONT)
            guard case .refused? = failure else {
                Issue.record("the send into a stopped broker gave \(String(describing: failure))")
                return
            }
            #expect(Deadline.wait(timeout: 10) {
                sender.isConnected && (try? sender.send(control: [], rec: [2], to: 1)) != nil
            })
            #expect(try receiver.receive(timeout: 10)?.rec == [2])
            #expect(try broker.stats().totals.badFrames == 0)
        }
    }

    @Test func withRingsOffAutomaticUsesTheSocketAndSharedMemoryFailsClearly() throws {
        try withSites(1, extraArguments: ["--max-ring-bytes", "0"]) { sites in
            let automatic = try client(sites.broker(1), name: "auto", transport: .automatic)
            try automatic.send(control: [], rec: [1], to: 1)
            #expect(try sites.broker(1).stats().clients.first { $0.name == "auto" }?.transport == "uds")
            #expect(throws: BrokerClientError.protocolError("the broker offers no shared-memory rings")) {
                _ = try client(sites.broker(1), transport: .sharedMemory)
            }
        }
    }
}
