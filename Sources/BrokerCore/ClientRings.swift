// A local client's shared-memory rings, on the broker's side: memory the shell mapped (a sealed memfd in the
// daemon, plain memory in the simulator). The to-broker ring carries the client's MESSAGE frames; the
// to-client ring carries what the client's receiver consumes, MESSAGE and SITE_EVENT frames, written straight
// from routing while the client's output queue is empty, from the queue otherwise. Every other frame, both
// ways, travels on the socket. A frame too large for one record is written as FRAGMENT records and a last
// FRAME record (RingFragments.swift). The doorbells are the shell's: publishing says whether to ring one.
// A MESSAGE record is parsed where it lies: the frame and message headers are each read once into local
// values and checked against the record's length, and the payload is then only copied, never interpreted,
// so a client that changes the shared memory meanwhile garbles nothing but its own payload. Parts of a
// fragmented frame are copied to private memory before the frame is parsed.
import BrokerWire

public final class ClientRings {
    let reader: RingReader
    let writer: RingWriter
    /// Frames for the client's socket: everything but MESSAGE and SITE_EVENT.
    let socketOutput = FrameQueue(capacity: 4096)
    /// Joins a client's message that came in parts.
    let assembler = FrameAssembler()
    /// Bytes of the frame at the front of the output queue already written as fragments.
    var fragmentOffset = 0
    /// Records written to the to-client ring and not yet published.
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-builds ipc, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) var hasUnpublished = false
    var ringBytes: Int { reader.ring.size }

    /// The rings in a segment laid out (RingLayout.initialize) at `base` for `ringBytes`-byte rings.
    public init(base: UnsafeMutableRawPointer, ringBytes: Int) {
        let rings = RingLayout.rings(base, ringBytes: ringBytes)
        reader = RingReader(rings.toBroker)
        writer = RingWriter(rings.toClient)
    }

    /// Writes one whole frame (from the output queue) into the to-client ring; false when full.
    @inline(__always)
    func write(frame: UnsafeRawBufferPointer) throws(RingError) -> Bool {
        let written = try writer.write(kind: .frame, payload: frame.count) { out in
            out.copyMemory(from: frame.baseAddress.unsafelyUnwrapped, byteCount: frame.count)
        }
        if written { hasUnpublished = true }
        return written
    }
}

extension ClientSession {
    /// Whether the to-broker ring has records to drain now.
    @inline(__always)
    var hasRingInput: Bool {
        $rings?.with { $0.reader.hasRecords } ?? false
    }

    /// Moves whole frames from the output queue into the to-client ring (a frame too large for one record in
    /// parts, resumed where it stopped when the ring filled); true when it moved any. The caller publishes.
    @discardableResult
    func flushToRing() -> Bool {
        guard let rings, !isClosed, !hungUp, !output.isEmpty else { return false }
        var moved = 0
        var progressed = false
        var bytes = output.readable
        do {
            while let size = FrameParser.pendingFrameSize(in: bytes), size <= bytes.count {
                let frame = UnsafeRawBufferPointer(rebasing: bytes[..<size])
                if size > rings.writer.maxPayload {
                    let offset = try rings.writer.writeFragments(of: frame, from: rings.fragmentOffset)
                    if offset > rings.fragmentOffset {
                        rings.hasUnpublished = true
                        progressed = true
                    }
                    rings.fragmentOffset = offset
                    guard offset == size else {
                        if rings.writer.announceWaiting(forPayload: rings.writer.maxPayload) { continue }
                        break
                    }
                    rings.fragmentOffset = 0
                } else if try !rings.write(frame: frame) {
                    // Full: say so; the client rings our doorbell when it has made room.
                    if rings.writer.announceWaiting(forPayload: size) { continue }
                    break
                }
                moved += size
                bytes = UnsafeRawBufferPointer(rebasing: bytes[size...])
            }
        } catch {
            protocolError(.malformed(type: .message, reason: "to-client ring: \(error.description)"))
            return true
        }
        guard moved > 0 || progressed else { return false }
        output.didWrite(moved)
        return true
    }
}
