// The peer link's scheduler: control frames before any data, flows served in turn a quantum at a time
// (deficit round robin by bytes), a flow out of window held until CREDIT, sent frames kept until acknowledged
// and sent again first on a new connection. No sockets: the wire is read like a connection would.
@testable import BrokerCore
import BrokerWire
import Testing

@Suite struct PeerSchedulerTests {
    /// Queues `count` MESSAGE frames of `payload` bytes for `group`; returns their frame size.
    @discardableResult
    func queue(_ link: PeerLink, _ group: Group, count: Int, payload: Int, tag: UInt8) -> Int {
        let header = MessageHeader(group: group.index, source: 1, destination: 2, flags: [], lsn: .zero,
                                   controlLength: 0, recLength: UInt32(payload), sequence: 0)
        let bytes = [UInt8](repeating: tag, count: payload)
        for _ in 0..<count {
            bytes.withUnsafeBytes { link.enqueue(header, payload: $0, in: link.flow(group, .replication), now: 0) }
        }
        return Wire.frameHeaderSize + Wire.messageHeaderSize + payload
    }

    /// Takes the wire as written, frame by frame: (type, group index of data frames).
    func drainWire(_ link: PeerLink) -> [(FrameType, UInt32)] {
        var frames: [(FrameType, UInt32)] = []
        link.refillWire()
        while !link.wire.isEmpty {
            var bytes = link.wire.readable
            while let size = FrameParser.pendingFrameSize(in: bytes), size <= bytes.count {
                let type = FrameType(rawValue: bytes[4])!
                let group = type == .message ? UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) : 0
                frames.append((type, group))
                bytes = UnsafeRawBufferPointer(rebasing: bytes[size...])
            }
            link.wire.didWrite(link.wire.byteCount)
            link.refillWire()
        }
        return frames
    }

    /// A frame on the wire is still in its flow (kept until acknowledged): the link counts it once. Counted twice,
    /// a 48 MiB message left a 64 MiB link no room, and the messages after it were dropped with the link up (a
    /// real-process test over TLS found it).
    @Test func aFrameOnTheWireIsCountedOnceAgainstTheQueueLimit() {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
        let group = Group(name: "g", index: 1, peerCount: 1)
        link.restartFlows(window: 512 << 10)
        link.enqueueControl(FrameParser.encode(.heartbeat, body: []))
        let large = queue(link, group, count: 1, payload: 700 << 10, tag: 1)
        let heartbeat = Wire.frameHeaderSize
        #expect(link.queuedBytes == large + heartbeat)
        link.refillWire()
        #expect(link.wire.byteCount == heartbeat + large, "the control frame, then the whole frame")
        #expect(link.queuedBytes == large + heartbeat)
        #expect(link.hasRoom(for: 200 << 10))
        // Written in part: the control frame and half the copy go; the frame stays counted once, in its flow.
        link.wire.didWrite(heartbeat + large / 2)
        #expect(link.queuedBytes == large)
        link.wire.didWrite(link.wire.byteCount)
        #expect(link.queuedBytes == large, "kept until acknowledged")
        #expect(!link.hasRoom(for: 400 << 10), "the limit still holds")
    }

    @Test func controlGoesFirstThenFlowsShareTheWireByQuantum() {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 64 << 20)
        let bulk = Group(name: "bulk", index: 1, peerCount: 1)
        let oltp = Group(name: "oltp", index: 2, peerCount: 1)
        link.restartFlows(window: 64 << 20)
        let bulkFrame = queue(link, bulk, count: 400, payload: 1000, tag: 1)
        queue(link, oltp, count: 3, payload: 100, tag: 2)
        link.enqueueControl(FrameParser.encode(.heartbeat, body: []))
        let frames = drainWire(link)
        #expect(frames.first?.0 == .heartbeat)
        // The small flow's 3 frames go within its first turn, after at most one quantum of the bulk flow.
        let firstOltp = frames.firstIndex { $0.0 == .message && $0.1 == 2 } ?? frames.count
        #expect(firstOltp - 1 <= PeerLink.quantum / bulkFrame + 1, "oltp waited behind \(firstOltp - 1) bulk frames")
        #expect(frames.filter { $0.1 == 2 }.count == 3 && frames.filter { $0.1 == 1 }.count == 400)
        // Everything is sent; all of it is kept until the peer acknowledges it.
        #expect(link.queuedBytes(of: bulk) == 0 && link.queuedBytes(of: oltp) == 0)
        #expect(link.flowBytes == 400 * bulkFrame + 3 * (bulkFrame - 900))
    }

    @Test func twoBusyFlowsAlternateInQuanta() {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 64 << 20)
        let a = Group(name: "a", index: 1, peerCount: 1)
        let b = Group(name: "b", index: 2, peerCount: 1)
        link.restartFlows(window: 64 << 20)
        let frame = queue(link, a, count: 500, payload: 1000, tag: 1)
        queue(link, b, count: 500, payload: 1000, tag: 2)
        let frames = drainWire(link).filter { $0.0 == .message }
        // Runs of one flow are at most one quantum long while both have frames.
        var longest = 0
        var run = 0
        for (index, entry) in frames.enumerated() where index < 900 {
            run = index > 0 && frames[index - 1].1 == entry.1 ? run + 1 : 1
            longest = max(longest, run)
        }
        #expect(longest <= PeerLink.quantum / frame + 1, "a run of \(longest) frames")
        #expect(frames.count == 1000)
    }

    @Test func aFlowOutOfWindowWaitsForCreditWhileOthersGo() throws {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 64 << 20)
        let slow = Group(name: "slow", index: 1, peerCount: 1)
        let other = Group(name: "other", index: 2, peerCount: 1)
        let window = 64 << 10
        link.restartFlows(window: window)
        let frame = queue(link, slow, count: 200, payload: 1000, tag: 1)
        queue(link, other, count: 10, payload: 100, tag: 2)
        let first = drainWire(link)
        // The slow flow sent whole frames while any window was left: just past the window, not more.
        let sent = first.filter { $0.1 == 1 }.count
        #expect(sent == (window + frame - 1) / frame, "\(sent) frames sent on a \(window)-byte window")
        #expect(first.filter { $0.1 == 2 }.count == 10)
        let flow = try #require(link.flows[PeerFlow.id(group: 1, .replication)])
        #expect(flow.window <= 0 && flow.stalls == 1 && !flow.isReady)
        // Sent frames stay until acknowledged; CREDIT for what the peer handed on acknowledges them and lets the
        // flow go on, as far as the new window allows.
        #expect(flow.unackedBytes == sent * frame && flow.unsentBytes == (200 - sent) * frame)
        link.credited(CreditFrame(group: 1, trafficClass: .replication, bytes: UInt32(sent * frame), acked: UInt32(sent)))
        #expect(flow.unackedBytes == 0)
        #expect(drainWire(link).filter { $0.1 == 1 }.count == sent)
        // A credit for a flow this side does not have (its group released) is ignored.
        link.credited(CreditFrame(group: 9, trafficClass: .replication, bytes: 1000, acked: 1))
        #expect(link.flows.count <= PeerFlow.id(group: 2, .channel) + 1)
    }

    /// The sequence numbers a wire carries, in order.
    func sequences(_ link: PeerLink) -> [UInt32] {
        var numbers: [UInt32] = []
        link.refillWire()
        while !link.wire.isEmpty {
            var bytes = link.wire.readable
            while let size = FrameParser.pendingFrameSize(in: bytes), size <= bytes.count {
                if FrameType(rawValue: bytes[4]) == .message {
                    numbers.append(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: PeerFlow.sequenceOffset, as: UInt32.self)))
                }
                bytes = UnsafeRawBufferPointer(rebasing: bytes[size...])
            }
            link.wire.didWrite(link.wire.byteCount)
            link.refillWire()
        }
        return numbers
    }

    @Test func aNewConnectionSendsWhatWasNotAcknowledgedAgainFirst() throws {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 64 << 20)
        let group = Group(name: "g", index: 3, peerCount: 1)
        link.restartFlows(window: 1 << 20)
        let frame = queue(link, group, count: 10, payload: 1000, tag: 1)
        link.enqueueControl(FrameParser.encode(.heartbeat, body: []))
        link.enqueueControl(FrameParser.encode(.peerAck, body: PeerAckFrame(group: 3, lsn: LSN(file: 1, offset: 2)).body))
        link.refillWire()
        // Half of the heartbeat written, then the peer acknowledged frames 1 to 3 (a CREDIT on the old connection)
        // and the connection died with the rest of the wire unwritten.
        link.wire.didWrite(4)
        link.credited(CreditFrame(group: 3, trafficClass: .replication, bytes: UInt32(3 * frame), acked: 3))
        link.restartFlows(window: 1 << 20)
        // The PEER_ACK goes again; the half-written heartbeat does not; frames 4 to 10 go again with their numbers.
        #expect(FrameType(rawValue: link.wire.readable[4]) == .peerAck && link.wire.byteCount == 8 + 12)
        queue(link, group, count: 1, payload: 1000, tag: 2)
        #expect(sequences(link) == Array(4...11))
        #expect(link.resent == 7)
        let flow = try #require(link.flows[PeerFlow.id(group: 3, .replication)])
        #expect(flow.window == (1 << 20) - 8 * frame && flow.unackedBytes == 8 * frame && link.credit.due.isEmpty)
        // The peer restarted instead: what it had not acknowledged is dropped and counted, the rest goes on.
        queue(link, group, count: 2, payload: 1000, tag: 3)
        #expect(link.dropUnacknowledged() == 8)
        link.restartFlows(window: 1 << 20)
        #expect(sequences(link) == [12, 13])
        #expect(link.queuedBytes == 2 * frame)
    }

    @Test func aLedgerTakesEachSequenceNumberOnceAndForgetsThemForAnotherGroupOrIncarnation() {
        var ledger = CreditLedger()
        var taken: [Bool] = []
        for (flow, number) in [(2, 7), (2, 8), (2, 8), (2, 3), (3, 8)] as [(Int, UInt32)] {
            taken.append(ledger.received(flow: flow, sequence: number, bytes: 100, batch: 1 << 20))
        }
        #expect(taken == [true, true, false, false, true], "flows are numbered apart")
        // Across the wrap of the 32-bit numbers.
        taken = [UInt32.max, 0, UInt32.max].map { ledger.received(flow: 4, sequence: $0, bytes: 100, batch: 1 << 20) }
        #expect(taken == [true, true, false])
        ledger.reset()
        taken = [ledger.received(flow: 2, sequence: 8, bytes: 100, batch: 1 << 20)]
        #expect(taken == [false], "a new connection keeps what was handled")
        ledger.forget(group: 1)
        taken = [ledger.received(flow: 2, sequence: 1, bytes: 100, batch: 1 << 20), ledger.received(flow: 3, sequence: 1, bytes: 100, batch: 1 << 20)]
        #expect(taken == [true, true], "another group on index 1 numbers from anywhere")
        ledger.forgetSequences()
        taken = [ledger.received(flow: 4, sequence: 5, bytes: 100, batch: 1 << 20)]
        #expect(taken == [true], "so does another incarnation")
        // The ack a CREDIT carries is the last number handled; every frame since the reset counts toward the credit.
        ledger.received(flow: 4, bytes: 5000, batch: 4096)
        let due = ledger.take(dueAt: ledger.due.firstIndex(of: 4) ?? 0)
        #expect(due.id == 4 && due.bytes == 5000 + 100 && due.acked == 5 && ledger.lastHandled(flow: 4) == 5)
        #expect(ledger.lastHandled(flow: 9) == nil)
    }

    @Test func creditIsOwedInBatchesOrOnTheTickAndForgottenWhenAnIndexIsBoundAnew() {
        var ledger = CreditLedger()
        ledger.received(flow: 2, bytes: 1000, batch: 4096)
        #expect(ledger.due.isEmpty && ledger.owed(flow: 2) == 1000)
        ledger.received(flow: 2, bytes: 4000, batch: 4096)
        ledger.received(flow: 2, bytes: 4000, batch: 4096)
        #expect(ledger.due == [2])
        let taken = ledger.take(dueAt: 0)
        #expect(taken.id == 2 && taken.bytes == 9000 && ledger.owed(flow: 2) == 0)
        ledger.received(flow: 3, bytes: 5000, batch: 4096)
        #expect(ledger.received(flow: 2) == (frames: 3, bytes: 9000) && ledger.due == [3])
        ledger.received(flow: 5, bytes: 10, batch: 4096)
        ledger.dueAll()
        ledger.dueAll()
        #expect(ledger.due == [3, 5], "less than a batch goes on the tick, once")
        // Flows 2 and 3 are group 1's (replication and channel).
        ledger.forget(group: 1)
        #expect(ledger.due == [5] && ledger.owed(flow: 3) == 0 && ledger.received(flow: 2) == (frames: 0, bytes: 0))
    }

    /// Against a model of the peer: random frames into random flows (both classes, sizes from 1 byte to 40 KiB),
    /// random partial writes of the wire, random credit (with the ack of what was handled) for what arrived,
    /// and a reconnect now and then, which loses whatever the wire held. The peer takes each frame once, in its
    /// flow's order, whatever was lost in a reconnect; a frame goes only while its flow has window; and with
    /// credit for everything every flow drains and nothing is left: none is starved.
    @Test func randomEnqueuesWritesGrantsAndReconnectsLoseNothingAndStarveNoFlow() throws {
        var generator = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0...UInt64.max, using: &generator)
        var random = SeededGenerator(seed: seed)
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 40)
        let groups = (1...4).map { Group(name: "g\($0)", index: UInt32($0), peerCount: 1) }
        let window = 64 << 10
        link.restartFlows(window: window)
        var queued: [Int: [UInt32]] = [:]     // per flow id: tags the peer has not taken yet, in order
        var peer = CreditLedger()             // the peer's side: what it handled, what it owes
        var owed: [Int: Int] = [:]            // bytes arrived at the peer on this connection, not yet credited
        var duplicates = 0
        var next: UInt32 = 0
        var partial = [UInt8]()                // bytes of the wire taken, not yet a whole frame
        func refill() {
            let before = link.flows.map { $0.map { ($0.window, $0.wiredBytes) } }
            link.refillWire()
            for (id, flow) in link.flows.enumerated() {
                guard let flow, let (window, wired) = before[id] else { continue }
                let moved = flow.wiredBytes - wired
                guard moved > 0 else { continue }
                // Frames went only while the flow had window, each charged to it: the last one whole, so the
                // window ends at most one frame (40 KiB and headers, here) below 0.
                #expect(window > 0 && flow.window == window - moved && flow.window > -41_000, "seed \(seed): flow \(id)")
            }
        }
        func takeFromWire(_ limit: Int) {
            refill()
            let take = min(limit, link.wire.byteCount)
            guard take > 0 else { return }
            partial += link.wire.readable[..<take]
            link.wire.didWrite(take)
            while let size = partial.withUnsafeBytes({ FrameParser.pendingFrameSize(in: $0) }), size <= partial.count {
                let frame = Array(partial[..<size])
                partial.removeFirst(size)
                let trafficClass: TrafficClass = frame[4] == FrameType.message.rawValue ? .replication : .channel
                let group = UInt32(frame[8]) | UInt32(frame[9]) << 8 | UInt32(frame[10]) << 16 | UInt32(frame[11]) << 24
                let id = PeerFlow.id(group: group, trafficClass)
                let number = frame[12..<16].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
                let tag = frame.suffix(4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
                owed[id, default: 0] += size
                let isNew = peer.received(flow: id, sequence: number, bytes: size, batch: .max)
                guard isNew else {
                    duplicates += 1
                    continue
                }
                #expect(queued[id]?.first == tag, "seed \(seed): flow \(id) delivered \(tag) out of order or twice")
                queued[id]?.removeFirst()
            }
        }
        func credit(_ id: Int, bytes: Int) {
            link.credited(CreditFrame(group: UInt32(id >> 1), trafficClass: id & 1 == 0 ? .replication : .channel,
                                      bytes: UInt32(bytes), acked: peer.lastHandled(flow: id) ?? 0))
        }
        for _ in 0..<3000 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5:
                let group = groups[Int.random(in: 0..<groups.count, using: &random)]
                let size = Int.random(in: 1...(Int.random(in: 0..<8, using: &random) == 0 ? 40_000 : 600), using: &random)
                next += 1
                var rec = [UInt8](repeating: 0, count: size)
                withUnsafeBytes(of: next.littleEndian) { rec += $0 }
                if Bool.random(using: &random) {
                    let header = MessageHeader(group: group.index, source: 1, destination: 2, flags: [], lsn: .zero,
                                               controlLength: 0, recLength: UInt32(rec.count), sequence: 0)
                    rec.withUnsafeBytes { link.enqueue(header, payload: $0, in: link.flow(group, .replication), now: 0) }
                    queued[PeerFlow.id(group: group.index, .replication), default: []].append(next)
                } else {
                    let frame = FrameParser.encode(.channel, body: ChannelFrame(group: group.index, destination: 2, kind: .message,
                                                                               channel: "c", requestID: 0, payload: rec).body)
                    link.enqueue(frame: frame, in: link.flow(group, .channel), now: 0)
                    queued[PeerFlow.id(group: group.index, .channel), default: []].append(next)
                }
            case 5..<8:
                takeFromWire(Int.random(in: 1...100_000, using: &random))
            case 8:
                // The peer hands on part of what it got and credits it, with the ack of what it handled.
                guard let (id, arrived) = owed.filter({ $0.value > 0 }).randomElement(using: &random) else { continue }
                let bytes = Int.random(in: 1...arrived, using: &random)
                owed[id] = arrived - bytes
                credit(id, bytes: bytes)
            default:
                if Int.random(in: 0..<20, using: &random) == 0 {
                    // A reconnect: what the wire held is lost, a half-taken frame with it; credit starts again.
                    partial.removeAll()
                    owed.removeAll()
                    peer.reset()
                    link.restartFlows(window: window)
                }
            }
        }
        // Credit for everything from now on: every flow drains, in order, nothing left anywhere.
        var rounds = 0
        while queued.values.contains(where: { !$0.isEmpty }) || !link.wire.isEmpty || link.queuedBytes > 0, rounds < 100_000 {
            rounds += 1
            takeFromWire(1 << 20)
            for (id, arrived) in owed where arrived > 0 {
                credit(id, bytes: arrived)
                owed[id] = 0
            }
        }
        #expect(queued.values.allSatisfy { $0.isEmpty }, "seed \(seed): frames never taken \(queued.filter { !$0.value.isEmpty })")
        #expect(link.queuedBytes == 0 && link.flowBytes == 0 && partial.isEmpty, "seed \(seed)")
        #expect(duplicates == 0 || link.resent > 0, "seed \(seed): duplicates only of frames sent again")
    }
}

/// xorshift64*: a reproducible sequence from a printed seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}
