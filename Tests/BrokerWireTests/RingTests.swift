// The shared-memory ring: records of random sizes with wrap-around, full and empty rings, corrupted
// positions and lengths refused, and the sleeping-consumer handshake under stress (no lost wake-up).
import BrokerSystem
import BrokerWire
import CRepBrokerIPC
import Foundation
import Testing

/// A zeroed, aligned segment in this process, laid out like a shared one.
final class LocalSegment: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int
    let rings: (toBroker: Ring, toClient: Ring)
    init(ringBytes: Int) {
        size = RingLayout.segmentBytes(ringBytes: ringBytes)
        base = .allocate(byteCount: size, alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        RingLayout.initialize(base, ringBytes: ringBytes)
        rings = RingLayout.rings(base, ringBytes: ringBytes)
    }
    deinit { base.deallocate() }
}

func pattern(_ sequence: Int, _ length: Int) -> [UInt8] {
    (0..<length).map { UInt8(truncatingIfNeeded: sequence &* 31 &+ $0) }
}

@Suite struct RingTests {
    @Test func segmentHeadersValidate() throws {
        let segment = LocalSegment(ringBytes: 4096)
        #expect(try RingLayout.validate(segment.base, size: segment.size) == 4096)
        #expect(throws: RingError.self) { try RingLayout.validate(segment.base, size: segment.size - 8) }
        segment.base.storeBytes(of: UInt64(5000), toByteOffset: 8, as: UInt64.self)
        #expect(throws: RingError.self) { try RingLayout.validate(segment.base, size: segment.size) }
        #expect(RingLayout.grantedRingBytes(requested: 5000, maximum: 1 << 20) == 8192)
        #expect(RingLayout.grantedRingBytes(requested: 1 << 30, maximum: 1 << 20) == 1 << 20)
        #expect(RingLayout.grantedRingBytes(requested: 1, maximum: 1 << 20) == 4096)
    }

    /// Found by `scripts/fuzz ring`: a reader made over shared positions it cannot trust. A head below the tail
    /// (it trapped on `head - tail`) and a tail that is not 8-aligned (a record header read across the end of
    /// the data) are refused with an error on the first read.
    @Test func aReaderOverCorruptPositionsRefusesThemOnItsFirstRead() throws {
        for (head, tail) in [(UInt64(96), UInt64(0xF600_0000_0000_0000)), (UInt64.max, UInt64(0xFFFF_FFFF_FFFF_EFFF))] {
            let segment = LocalSegment(ringBytes: 4096)
            let ring = segment.rings.toBroker
            (segment.base + RingLayout.toBrokerControl).storeBytes(of: head, as: UInt64.self)
            (segment.base + RingLayout.toBrokerControl + 64).storeBytes(of: tail, as: UInt64.self)
            (segment.base + RingLayout.headerBytes).initializeMemory(as: UInt8.self, repeating: 0xFF, count: 4096)
            let reader = RingReader(ring)
            #expect(throws: RingError.self, "head \(head), tail \(tail)") { _ = try reader.next() }
        }
    }

    @Test func randomRecordsWrapAroundInOrderAndFullAndEmptyAreSeen() throws {
        let segment = LocalSegment(ringBytes: 4096)
        let writer = RingWriter(segment.rings.toBroker)
        let reader = RingReader(segment.rings.toBroker)
        var pending: [[UInt8]] = []
        var written = 0
        var read = 0
        var sawFull = false
        var sawEmpty = false
        for _ in 0..<20_000 {
            if Bool.random() {
                let bytes = pattern(written, Int.random(in: 1...writer.maxPayload))
                let ok = try writer.write(kind: .frame, payload: bytes.count) { out in
                    bytes.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                }
                if ok {
                    pending.append(bytes)
                    written += 1
                    writer.publish()
                } else {
                    sawFull = true
                }
            } else {
                guard let record = try reader.next() else {
                    sawEmpty = true
                    #expect(pending.isEmpty)
                    continue
                }
                #expect(record.kind == .frame)
                #expect(Array(record.payload) == pending.removeFirst(), "record \(read)")
                read += 1
                reader.release()
            }
        }
        #expect(sawFull && sawEmpty && written > 1000)
    }

    /// Frames of every size up to five times the largest record, in a 4 KiB ring the reader drains as it
    /// goes: each comes back whole and in order, between single-record frames, across wraps.
    @Test func largeFramesTravelInPartsAndComeBackWhole() throws {
        let segment = LocalSegment(ringBytes: 4096)
        let writer = RingWriter(segment.rings.toClient)
        let reader = RingReader(segment.rings.toClient)
        let assembler = FrameAssembler()
        let limit = 5 * writer.maxPayload
        var sizes = [100, writer.maxPayload, writer.maxPayload + 1, 2 * writer.maxPayload, limit]
        for size in stride(from: 9, through: limit, by: 397) { sizes.append(size) }
        var received: [[UInt8]] = []
        for (index, size) in sizes.enumerated() {
            var frame = FrameParser.encode(.role, body: [UInt8](repeating: 0, count: size - Wire.frameHeaderSize))
            for i in Wire.frameHeaderSize..<size { frame[i] = UInt8(truncatingIfNeeded: i &* 31 &+ index) }
            var offset = 0
            var rounds = 0
            while offset < frame.count {
                offset = try frame.withUnsafeBytes { try writer.writeFragments(of: $0, from: offset) }
                writer.publish()
                while let record = try reader.next() {
                    if let whole = try assembler.add(kind: record.kind, payload: record.payload, maxFrame: limit) {
                        received.append(Array(whole))
                    }
                }
                reader.release()
                rounds += 1
                #expect(rounds < 100)
            }
            #expect(received.count == index + 1)
            #expect(received.last == frame, "frame \(index) of \(size) bytes")
        }
    }

    @Test func partsThatDisagreeWithTheirFrameAreRefused() throws {
        let header = FrameParser.encode(.role, body: [UInt8](repeating: 1, count: 92)) // a 100-byte frame
        try header.withUnsafeBytes { whole in
            let first = UnsafeRawBufferPointer(rebasing: whole[..<60])
            let rest = UnsafeRawBufferPointer(rebasing: whole[60...])
            // Parts adding up to the frame.
            let assembler = FrameAssembler()
            #expect(try assembler.add(kind: .fragment, payload: first, maxFrame: 100) == nil)
            #expect(try assembler.add(kind: .frame, payload: rest, maxFrame: 100).map(Array.init) == Array(whole))
            // A frame over the limit.
            #expect(throws: RingError.self) { _ = try FrameAssembler().add(kind: .fragment, payload: first, maxFrame: 99) }
            // A first part too short to hold the header.
            #expect(throws: RingError.self) {
                _ = try FrameAssembler().add(kind: .fragment, payload: UnsafeRawBufferPointer(rebasing: whole[..<4]), maxFrame: 100)
            }
            // Parts running past the frame, or ending short of it.
            let long = FrameAssembler()
            _ = try long.add(kind: .fragment, payload: first, maxFrame: 100)
            #expect(throws: RingError.self) { _ = try long.add(kind: .fragment, payload: whole, maxFrame: 100) }
            let short = FrameAssembler()
            _ = try short.add(kind: .fragment, payload: first, maxFrame: 100)
            #expect(throws: RingError.self) { _ = try short.add(kind: .frame, payload: UnsafeRawBufferPointer(rebasing: first[..<10]), maxFrame: 100) }
            // A fragment holding the whole frame.
            #expect(throws: RingError.self) { _ = try FrameAssembler().add(kind: .fragment, payload: whole, maxFrame: 100) }
        }
    }

    @Test func corruptPositionsAndLengthsAreRefused() throws {
        let segment = LocalSegment(ringBytes: 4096)
        let ring = segment.rings.toBroker
        let writer = RingWriter(ring)
        #expect(try writer.write(kind: .frame, payload: 16) { $0.initializeMemory(as: UInt8.self, repeating: 1, count: 16) })
        writer.publish()
        // A length that runs past the published head.
        let data = segment.base + RingLayout.headerBytes
        data.storeBytes(of: UInt32(4000), as: UInt32.self)
        #expect(throws: RingError.self) { _ = try RingReader(ring).next() }
        // An unknown kind.
        data.storeBytes(of: UInt32(16), as: UInt32.self)
        data.storeBytes(of: UInt32(99), toByteOffset: 4, as: UInt32.self)
        #expect(throws: RingError.self) { _ = try RingReader(ring).next() }
        // A head more than a ring ahead of the tail.
        (segment.base + RingLayout.toBrokerControl).storeBytes(of: UInt64(10_000), as: UInt64.self)
        #expect(throws: RingError.self) { _ = try RingReader(ring).next() }
        // A tail past the head, seen by the producer.
        (segment.base + RingLayout.toBrokerControl).storeBytes(of: UInt64(24), as: UInt64.self)
        (segment.base + RingLayout.toBrokerControl + 64).storeBytes(of: UInt64(9_000), as: UInt64.self)
        let confused = RingWriter(ring)
        #expect(throws: RingError.self) {
            for _ in 0..<1000 { _ = try confused.write(kind: .frame, payload: 512) { _ in } }
        }
    }

    /// Producer and consumer threads; the consumer sleeps on an eventfd whenever the ring is empty and the
    /// producer pauses now and then, so sleeping and waking happen thousands of times. A lost wake-up would
    /// leave the consumer asleep with records waiting: the test fails on the 5 s poll timeout.
    @Test func noWakeUpIsLostUnderStress() throws {
        let count = 1_000_000
        let segment = LocalSegment(ringBytes: 1 << 16)
        let writer = RingWriter(segment.rings.toBroker)
        let reader = RingReader(segment.rings.toBroker)
        let doorbell = try EventFd()
        let producerBell = try EventFd()
        var wakeUps = 0
        startThread {
            var sequence = 0
            while sequence < count {
                let length = 9 + sequence % 57
                let ok = try! writer.write(kind: .frame, payload: length) { out in
                    out.storeBytes(of: UInt64(sequence), as: UInt64.self)
                    out.advanced(by: 8).initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: sequence), count: length - 8)
                }
                if !ok {
                    writer.publish()
                    if writer.consumerNeedsWake() { doorbell.signal() }
                    if !writer.announceWaiting(forPayload: length) {
                        _ = rb_poll_two(producerBell.descriptor, producerBell.descriptor, 5000)
                        producerBell.drain()
                    }
                    continue
                }
                sequence += 1
                if sequence % 16 == 0 || sequence == count {
                    writer.publish()
                    if writer.consumerNeedsWake() { doorbell.signal() }
                }
                if sequence % 1000 == 0 { usleep(20) }
            }
        }
        var expected = 0
        var lost = false
        while expected < count {
            if let record = try reader.next() {
                let sequence = Int(record.payload.load(as: UInt64.self))
                guard sequence == expected, record.payload.count == 9 + sequence % 57,
                      record.payload.last == UInt8(truncatingIfNeeded: sequence) else {
                    Issue.record("record \(expected) arrived as \(sequence) with \(record.payload.count) bytes")
                    return
                }
                expected += 1
                if expected % 64 == 0 {
                    reader.release()
                    if reader.producerNeedsWake() { producerBell.signal() }
                }
                continue
            }
            reader.release()
            if reader.producerNeedsWake() { producerBell.signal() }
            if reader.prepareToSleep() {
                wakeUps += 1
                if rb_poll_two(doorbell.descriptor, doorbell.descriptor, 5000) == 0 {
                    lost = true
                    break
                }
                doorbell.drain()
                reader.awake()
            }
        }
        #expect(!lost, "consumer slept with records waiting after \(expected) records")
        #expect(expected == count)
        #expect(wakeUps > 100, "the consumer should have slept often, slept \(wakeUps) times")
        print("ring stress: \(count) records, consumer slept \(wakeUps) times")
    }
}
