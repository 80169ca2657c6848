// A randomized, seeded stress run of the client library against a real broker: sender threads on clients of
// both transports, messages of every size (some in parts), PERMANENT sends from other threads and from inside
// receiveAll callbacks, receive, nextEvent and receiveAll alternating, and the broker killed with -9 and
// restarted twice. Set REPBROKER_STRESS_SEED to replay a seed; a failure names the seed it ran with.
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Synchronization
import Testing

/// SplitMix64: small, seedable, good enough to pick sizes and actions.
struct SeededRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

@Suite struct ClientStressTests {
    /// Per stream (one per sender thread, and the echo stream sent from inside callbacks): nothing twice,
    /// nothing out of order, every byte as sent; after the last restart every message sent arrives.
    @Test func randomizedSendersReceiversAndRestartsKeepEveryStreamInOrder() throws {
        let seed = ProcessInfo.processInfo.environment["REPBROKER_STRESS_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 1...UInt64.max)
        try withSites(1) { sites in
            let broker = sites.broker(1)
            var receiverOptions = BrokerClientOptions(socketPath: broker.socketPath, name: "stress-receiver",
                                                      roles: [.sender, .receiver])
            receiverOptions.transport = .sharedMemory
            receiverOptions.ringBytes = 8192
            let receiver = try BrokerClient(options: receiverOptions)
            #expect(receiver.waitForReceiverRole(timeout: 10))
            let senderCount = 3
            let senders = try (0..<senderCount).map { index in
                try client(broker, name: "stress-\(index)", transport: index == 0 ? .unixSocket : .sharedMemory,
                           ringBytes: 8192)
            }
            let failures = Locked<[String]>([])
            @Sendable func fail(_ text: String) { failures.withLock { if $0.count < 20 { $0.append(text) } } }
            // Stream s's sequence numbers go in lsn.offset, its id in lsn.file (1...senderCount; the echo
            // stream is senderCount + 1). A message's bytes are a function of (stream, sequence).
            @Sendable func fill(_ stream: UInt32, _ sequence: UInt32, _ size: Int) -> [UInt8] {
                (0..<size).map { UInt8(truncatingIfNeeded: Int(stream) &* 7 &+ Int(sequence) &+ $0) }
            }
            @Sendable func size(_ random: inout SeededRandom) -> Int {
                switch random.below(10) {
                case 0: return 3000 + random.below(20_000) // over a quarter of the 8 KiB ring: in parts
                case 1: return 0
                default: return 1 + random.below(300)
                }
            }
            let phase = Atomic<Int>(0) // restarts done
            // Senders stop first, while the receiver still receives: a receiver that stops makes senders wait.
            let stop = Atomic<Bool>(false)
            let stopReceiving = Atomic<Bool>(false)
            let finished = Atomic<Int>(0) // threads that left their loop
            let sentInLastPhase = Locked<[UInt32: ClosedRange<UInt32>]>([:])
            let senderThreads = senders.enumerated().map { index, sender in
                Thread {
                    var random = SeededRandom(state: seed &+ UInt64(index) &* 1000)
                    let stream = UInt32(index + 1)
                    var sequence: UInt32 = 0
                    while !stop.load(ordering: .relaxed) {
                        let bytes = fill(stream, sequence + 1, size(&random))
                        let permanent = random.below(8) == 0
                        let phaseBefore = phase.load(ordering: .acquiring)
                        do throws(BrokerClientError) {
                            try sender.send(control: [UInt8(index)], rec: bytes, lsn: LSN(file: stream, offset: sequence + 1),
                                            to: 1, flags: permanent ? .permanent : [])
                            sequence += 1
                            if phaseBefore == 2 {
                                sentInLastPhase.withLock { $0[stream] = ($0[stream]?.lowerBound ?? sequence)...sequence }
                            }
                        } catch .brokerUnavailable {
                            // Killed broker: wait for the next one. Messages it held are lost with it.
                            _ = sender.waitForConnection(timeout: 10)
                        } catch {
                            fail("seed \(seed): stream \(stream) send #\(sequence + 1): \(error)")
                        }
                        if random.below(50) == 0 { usleep(UInt32(random.below(2000))) }
                    }
                    finished.add(1, ordering: .releasing)
                }
            }
            // The receiving thread: nextEvent, receive and receiveAll in turn; from inside receiveAll callbacks,
            // now and then a send (PERMANENT at times) of the echo stream to itself.
            let echoStream = UInt32(senderCount + 1)
            struct Seen { var last: [UInt32: UInt32] = [:], total = 0 }
            let seen = Locked(Seen())
            let receiving = Thread {
                var random = SeededRandom(state: seed ^ 0xA5A5)
                var echoSequence: UInt32 = 0
                func check(_ lsn: LSN, _ rec: UnsafeRawBufferPointer) {
                    let stream = lsn.file, sequence = lsn.offset
                    if !rec.elementsEqual(fill(stream, sequence, rec.count)) { fail("seed \(seed): stream \(stream) #\(sequence): bytes differ") }
                    seen.withLock {
                        let last = $0.last[stream, default: 0]
                        if sequence <= last { fail("seed \(seed): stream \(stream): #\(sequence) after #\(last)") }
                        $0.last[stream] = sequence
                        $0.total += 1
                    }
                }
                while !stopReceiving.load(ordering: .relaxed) {
                    do throws(BrokerClientError) {
                        switch random.below(3) {
                        case 0:
                            if case .message(let message)? = try receiver.nextEvent(timeout: 0.05) {
                                message.rec.withUnsafeBytes { check(message.lsn, $0) }
                            }
                        case 1:
                            if let message = try receiver.receive(timeout: 0.05) {
                                message.rec.withUnsafeBytes { check(message.lsn, $0) }
                            }
                        default:
                            try receiver.receiveAll(timeout: 0.05) { message in
                                check(message.lsn, message.rec)
                                guard random.below(20) == 0 else { return }
                                let bytes = fill(echoStream, echoSequence + 1, size(&random))
                                do throws(BrokerClientError) {
                                    try receiver.send(control: [], rec: bytes, lsn: LSN(file: echoStream, offset: echoSequence + 1),
                                                      to: 1, flags: random.below(2) == 0 ? .permanent : [])
                                    echoSequence += 1
                                } catch .brokerUnavailable {
                                } catch {
                                    fail("seed \(seed): echo send from a callback: \(error)")
                                }
                            }
                        }
                    } catch .brokerUnavailable {
                    } catch {
                        fail("seed \(seed): receiving: \(error)")
                    }
                }
                finished.add(1, ordering: .releasing)
            }
            senderThreads.forEach { $0.start() }
            receiving.start()
            defer {
                stop.store(true, ordering: .relaxed)
                stopReceiving.store(true, ordering: .relaxed)
            }
            for restart in 1...2 {
                let before = seen.withLock { $0.total }
                #expect(Deadline.wait(timeout: 60) { seen.withLock { $0.total } >= before + 1000 }, "seed \(seed)")
                broker.kill9()
                try broker.start()
                #expect(receiver.waitForConnection(timeout: 10) && receiver.waitForReceiverRole(timeout: 10), "seed \(seed)")
                phase.store(restart, ordering: .releasing)
            }
            let before = seen.withLock { $0.total }
            #expect(Deadline.wait(timeout: 60) { seen.withLock { $0.total } >= before + 1500 }, "seed \(seed)")
            stop.store(true, ordering: .relaxed)
            #expect(Deadline.wait(timeout: 20) { finished.load(ordering: .acquiring) == senderCount }, "seed \(seed)")
            stopReceiving.store(true, ordering: .relaxed)
            #expect(Deadline.wait(timeout: 20) { finished.load(ordering: .acquiring) == senderCount + 1 }, "seed \(seed)")
            // Every message sent after the last restart arrives.
            let expected = sentInLastPhase.withLock { $0 }
            #expect(!expected.isEmpty, "seed \(seed)")
            let arrived = Deadline.wait(timeout: 20) {
                _ = try? receiver.receiveAll(timeout: 0.05) { message in
                    seen.withLock { $0.last[message.lsn.file] = max($0.last[message.lsn.file, default: 0], message.lsn.offset) }
                }
                let last = seen.withLock { $0.last }
                return expected.allSatisfy { last[$0.key, default: 0] >= $0.value.upperBound }
            }
            #expect(arrived, "seed \(seed): last phase sent \(expected), last seen \(seen.withLock { $0.last })")
            #expect(failures.withLock { $0 }.isEmpty, "seed \(seed): \(failures.withLock { $0 })")
        }
    }
}
