// The ring's golden vectors (ipc/vectors/rings.json, written by ipc/vectors/generate.py from PROTOCOL.md):
// the producer writes exactly the bytes of each case from its start position (WRAP and FRAGMENT records
// included), and the consumer reads each case's bytes back into its frames.
import BrokerWire
import Foundation
import Testing

struct RingVectorFile: Decodable {
    struct Case: Decodable {
        let name: String
        let ring_bytes: Int
        let start: UInt64
        let head: UInt64
        let frames: [String]
        let data: String
    }
    let cases: [Case]

    static func load() throws -> RingVectorFile {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return try JSONDecoder().decode(RingVectorFile.self,
                                        from: Data(contentsOf: root.appendingPathComponent("ipc/vectors/rings.json")))
    }
}

@Suite struct RingVectorTests {
    /// The to-client ring of a fresh segment with head and tail both at `start`.
    private func segment(_ vector: RingVectorFile.Case) -> (LocalSegment, UnsafeMutableRawPointer, Ring) {
        let segment = LocalSegment(ringBytes: vector.ring_bytes)
        let control = segment.base + RingLayout.toClientControl
        control.storeBytes(of: vector.start.littleEndian, toByteOffset: 0, as: UInt64.self)
        control.storeBytes(of: vector.start.littleEndian, toByteOffset: 64, as: UInt64.self)
        return (segment, segment.base + RingLayout.headerBytes + vector.ring_bytes, segment.rings.toClient)
    }

    @Test func theProducerWritesTheVectorsBytes() throws {
        let file = try RingVectorFile.load()
        #expect(file.cases.count >= 3)
        for vector in file.cases {
            let (segment, data, ring) = segment(vector)
            let writer = RingWriter(ring)
            for hex in vector.frames {
                let frame = bytes(hex: hex)
                let written = try frame.withUnsafeBytes { try writer.writeFragments(of: $0, from: 0) }
                #expect(written == frame.count, "\(vector.name)")
            }
            writer.publish()
            let head = (segment.base + RingLayout.toClientControl).load(as: UInt64.self)
            #expect(UInt64(littleEndian: head) == vector.head, "\(vector.name)")
            #expect(Array(UnsafeRawBufferPointer(start: data, count: vector.ring_bytes)) == bytes(hex: vector.data),
                    "\(vector.name)")
        }
    }

    @Test func theConsumerReadsTheVectorsFramesBack() throws {
        for vector in try RingVectorFile.load().cases {
            let (segment, data, ring) = segment(vector)
            let image = bytes(hex: vector.data)
            image.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: image.count) }
            (segment.base + RingLayout.toClientControl).storeBytes(of: vector.head.littleEndian, as: UInt64.self)
            let reader = RingReader(ring)
            let assembler = FrameAssembler()
            var frames: [[UInt8]] = []
            while let record = try reader.next() {
                if let whole = try assembler.add(kind: record.kind, payload: record.payload, maxFrame: 1 << 20) {
                    frames.append(Array(whole))
                }
            }
            #expect(frames == vector.frames.map { bytes(hex: $0) }, "\(vector.name)")
        }
    }
}
