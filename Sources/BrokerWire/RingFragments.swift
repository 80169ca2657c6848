// Frames too large for one ring record: the producer writes them as FRAGMENT records of at most
// `maxPayload` bytes and a last FRAME record; the consumer copies the parts into private memory and gets
// the frame once the last part came. Every length is checked before use: the first part must hold the
// frame header, the frame it announces must fit the limit, and the parts must add up to it exactly.

extension RingWriter {
    /// Writes `frame` from `offset` on as FRAGMENT records and a last FRAME record, as far as the ring has
    /// room; returns the new offset (`frame.count` once the whole frame is written). The caller publishes.
    public func writeFragments(of frame: UnsafeRawBufferPointer, from offset: Int) throws(RingError) -> Int {
        var offset = offset
        let base = frame.baseAddress.unsafelyUnwrapped
        while offset < frame.count {
            let part = min(frame.count - offset, maxPayload)
            let last = offset + part == frame.count
            let written = try write(kind: last ? .frame : .fragment, payload: part) { out in
                out.copyMemory(from: base + offset, byteCount: part)
            }
            guard written else { break }
            offset += part
        }
        return offset
    }
}

/// The consumer's side: joins the parts of one frame at a time.
public final class FrameAssembler {
    private let buffer: ByteBuffer
    /// The whole frame's size, from the first part's header; 0 when no frame is being joined.
    private var expected = 0
    private var completed = false

    public init(capacity: Int = 4096) { buffer = ByteBuffer(capacity: capacity) }

    /// Whether parts of a frame came and its last part has not.
    public var isJoining: Bool { expected > 0 }

    /// Takes one FRAME or FRAGMENT record. Returns the whole frame's bytes when `payload` completes one: the
    /// record itself for a frame in one record (valid while the record is), else the joined copy (valid
    /// until the next call). Returns nil after a FRAGMENT. `maxFrame` bounds the frame's size.
    public func add(kind: RecordKind, payload: UnsafeRawBufferPointer, maxFrame: Int) throws(RingError)
        -> UnsafeRawBufferPointer? {
        if completed {
            completed = false
            buffer.reset()
            buffer.shrinkIfIdle()
        }
        if expected == 0 {
            if kind == .frame { return payload }
            guard let size = FrameParser.pendingFrameSize(in: payload) else {
                throw RingError("a first fragment of \(payload.count) bytes does not hold a frame header")
            }
            guard size <= maxFrame else { throw RingError("fragments announce a frame of \(size) bytes, over \(maxFrame)") }
            guard payload.count < size else { throw RingError("a fragment holds the whole frame of \(size) bytes") }
            expected = size
            buffer.reserve(size)
        } else {
            guard buffer.readableBytes + payload.count <= expected else {
                throw RingError("fragments pass the announced frame size of \(expected) bytes")
            }
        }
        buffer.append(payload)
        guard kind == .frame else { return nil }
        guard buffer.readableBytes == expected else {
            throw RingError("a frame's last part ends at \(buffer.readableBytes) bytes, not \(expected)")
        }
        expected = 0
        completed = true
        return buffer.readable
    }

    /// Forgets a partly joined frame (its producer went away).
    public func reset() {
        expected = 0
        completed = false
        buffer.reset()
        buffer.shrinkIfIdle()
    }
}
