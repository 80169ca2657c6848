// The peer link's scheduler: control frames before any data, flows served in turn a quantum at a time
// (deficit round robin by bytes), a flow out of window held until CREDIT, and the windows started again on a
// new connection less the data frames left in the wire. No sockets: the wire is read like a connection would.
@testable import BrokerDaemon
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
            bytes.withUnsafeBytes { link.enqueue(header, payload: $0, in: link.flow(group, .replication)) }
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
        #expect(link.queuedBytes == 0 && link.flowBytes == 0)
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
        // CREDIT for what the peer handed on: the flow goes on, as far as the new window allows.
        link.credited(CreditFrame(group: 1, trafficClass: .replication, bytes: UInt32(sent * frame)))
        #expect(drainWire(link).filter { $0.1 == 1 }.count == sent)
        // A credit for a flow this side does not have (its group released) is ignored.
        link.credited(CreditFrame(group: 9, trafficClass: .replication, bytes: 1000))
        #expect(link.flows.count <= PeerFlow.id(group: 2, .channel) + 1)
    }

    @Test func aNewConnectionRestartsWindowsLessTheFramesLeftInTheWire() throws {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 64 << 20)
        let group = Group(name: "g", index: 3, peerCount: 1)
        link.restartFlows(window: 1 << 20)
        let frame = queue(link, group, count: 10, payload: 1000, tag: 1)
        link.refillWire()
        // Half of the first frame written, then the connection died: that frame is dropped, nine are left.
        link.wire.didWrite(frame / 2)
        #expect(link.wire.discardPartialFront())
        link.restartFlows(window: 100_000)
        let flow = try #require(link.flows[PeerFlow.id(group: 3, .replication)])
        #expect(flow.window == 100_000 - 9 * frame)
        #expect(link.credit.due.isEmpty)
    }

    @Test func creditIsOwedInBatchesAndForgottenWhenAnIndexIsBoundAnew() {
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
        // Flows 2 and 3 are group 1's (replication and channel).
        ledger.forget(group: 1)
        #expect(ledger.due.isEmpty && ledger.owed(flow: 3) == 0 && ledger.received(flow: 2) == (frames: 0, bytes: 0))
    }

    /// Against a model: random frames into random flows (both classes, sizes from 1 byte to 40 KiB), random
    /// partial writes of the wire, random credit for what was sent, and a reconnect now and then. Every
    /// frame leaves exactly once and in its flow's order, a frame goes only while its flow has window, and
    /// with credit for everything every flow drains: none is starved.
    @Test func randomEnqueuesWritesAndGrantsLoseNothingAndStarveNoFlow() throws {
        var generator = SystemRandomNumberGenerator()
        let seed = UInt64.random(in: 0...UInt64.max, using: &generator)
        var random = SeededGenerator(seed: seed)
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 40)
        let groups = (1...4).map { Group(name: "g\($0)", index: UInt32($0), peerCount: 1) }
        let window = 64 << 10
        link.restartFlows(window: window)
        var queued: [Int: [UInt32]] = [:]     // per flow id: sequence numbers not yet out of the wire
        var sentNotCredited: [Int: Int] = [:]  // bytes out since the last credit (the peer "owes" them)
        var next: UInt32 = 0
        var partial = [UInt8]()                // bytes of the wire taken, not yet a whole frame
        func refill() {
            let before = link.flows.map { $0.map { ($0.window, $0.bytesSent) } }
            link.refillWire()
            for (id, flow) in link.flows.enumerated() {
                guard let flow, let (window, sent) = before[id] else { continue }
                let moved = flow.bytesSent - sent
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
                let sequence = frame.suffix(4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
                #expect(queued[id]?.first == sequence, "seed \(seed): flow \(id) sent \(sequence) out of order or twice")
                queued[id]?.removeFirst()
                sentNotCredited[id, default: 0] += size
            }
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
                    rec.withUnsafeBytes { link.enqueue(header, payload: $0, in: link.flow(group, .replication)) }
                    queued[PeerFlow.id(group: group.index, .replication), default: []].append(next)
                } else {
                    let frame = FrameParser.encode(.channel, body: ChannelFrame(group: group.index, destination: 2, kind: .message,
                                                                               channel: "c", requestID: 0, payload: rec).body)
                    link.enqueue(frame: frame, in: link.flow(group, .channel))
                    queued[PeerFlow.id(group: group.index, .channel), default: []].append(next)
                }
            case 5..<8:
                takeFromWire(Int.random(in: 1...100_000, using: &random))
            case 8:
                // The peer hands on part of what it got and credits it.
                guard let (id, owed) = sentNotCredited.filter({ $0.value > 0 }).randomElement(using: &random) else { continue }
                let bytes = Int.random(in: 1...owed, using: &random)
                sentNotCredited[id] = owed - bytes
                link.credited(CreditFrame(group: UInt32(id >> 1), trafficClass: id & 1 == 0 ? .replication : .channel,
                                          bytes: UInt32(bytes)))
            default:
                if Int.random(in: 0..<20, using: &random) == 0 {
                    // A reconnect: a half-written frame is lost (its flow's model forgets it), windows start again.
                    if link.wire.discardPartialFront(), let size = partial.withUnsafeBytes({ FrameParser.pendingFrameSize(in: $0) }) {
                        let frame = partial + [UInt8](repeating: 0, count: max(0, size - partial.count))
                        let trafficClass: TrafficClass = frame[4] == FrameType.message.rawValue ? .replication : .channel
                        let group = UInt32(frame[8]) | UInt32(frame[9]) << 8
                        queued[PeerFlow.id(group: group, trafficClass)]?.removeFirst()
                        partial.removeAll()
                    }
                    link.restartFlows(window: window)
                    sentNotCredited.removeAll()
                }
            }
        }
        // Credit for everything from now on: every flow drains, in order, nothing left anywhere.
        var rounds = 0
        while queued.values.contains(where: { !$0.isEmpty }) || !link.wire.isEmpty, rounds < 100_000 {
            rounds += 1
            takeFromWire(1 << 20)
            for (id, owed) in sentNotCredited where owed > 0 {
                link.credited(CreditFrame(group: UInt32(id >> 1), trafficClass: id & 1 == 0 ? .replication : .channel,
                                          bytes: UInt32(owed)))
                sentNotCredited[id] = 0
            }
        }
        #expect(queued.values.allSatisfy { $0.isEmpty }, "seed \(seed): frames never sent \(queued.filter { !$0.value.isEmpty })")
        #expect(link.queuedBytes == 0 && link.flowBytes == 0 && partial.isEmpty, "seed \(seed)")
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
