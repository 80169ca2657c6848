// Outgoing frames back to back in one buffer, written by whole-buffer writes that may end mid-frame.
// The queue tracks how much of the front frame is still unwritten, so that when a connection dies the
// rest of a half-written frame can be dropped and the remaining whole frames handed to another one.
// Unchecked exclusivity on the per-record state below: one thread owns it and no access to it overlaps
// another; scripts/compare-builds ipc (64 B) ran a third slower with the runtime's checks.

/// A queue of whole frames with frame-boundary tracking.
public final class FrameQueue {
    public let buffer: ByteBuffer
    /// Bytes of the front frame not yet written; 0 when the front is a frame boundary.
    @exclusivity(unchecked) public private(set) var frontRemaining = 0

    public init(capacity: Int) { buffer = ByteBuffer(capacity: capacity) }

    public var byteCount: Int { buffer.readableBytes }
    public var isEmpty: Bool { buffer.isEmpty }
    public var readable: UnsafeRawBufferPointer { buffer.readable }

    /// Consumes `count` written bytes, following frame boundaries.
    public func didWrite(_ count: Int) {
        var left = count
        while left > 0 {
            if frontRemaining == 0 {
                guard let size = FrameParser.pendingFrameSize(in: buffer.readable) else {
                    preconditionFailure("FrameQueue holds a partial frame header")
                }
                frontRemaining = size
            }
            let step = min(left, frontRemaining)
            buffer.consume(step)
            frontRemaining -= step
            left -= step
        }
        if buffer.isEmpty { buffer.shrinkIfIdle() }
    }

    /// Drops what is left of a partly written front frame; true when there was one.
    @discardableResult
    public func discardPartialFront() -> Bool {
        guard frontRemaining > 0 else { return false }
        buffer.consume(frontRemaining)
        frontRemaining = 0
        return true
    }

    /// Puts whole frames in front; only at a frame boundary.
    public func prepend(_ frames: [UInt8]) {
        precondition(frontRemaining == 0, "prepend in the middle of a frame")
        buffer.prepend(frames)
    }

    /// Appends the whole MESSAGE frames (only those) to `other`, up to `limit` bytes there, and empties this
    /// queue. Returns how many messages moved, their payload bytes, and how many did not fit.
    public func moveMessages(to other: ByteBuffer, limit: Int) -> (moved: Int, payloadBytes: Int, dropped: Int) {
        precondition(frontRemaining == 0, "move in the middle of a frame")
        var bytes = buffer.readable
        var moved = 0
        var payloadBytes = 0
        var dropped = 0
        while let size = FrameParser.pendingFrameSize(in: bytes), size <= bytes.count {
            if bytes[4] == FrameType.message.rawValue {
                if other.readableBytes + size <= limit {
                    other.append(UnsafeRawBufferPointer(rebasing: bytes[..<size]))
                    moved += 1
                    payloadBytes += size - Wire.frameHeaderSize - Wire.messageHeaderSize
                } else {
                    dropped += 1
                }
            }
            bytes = UnsafeRawBufferPointer(rebasing: bytes[size...])
        }
        clear()
        return (moved, payloadBytes, dropped)
    }

    /// Moves the whole frames whose type passes `moving` to `other`, in order, keeping the others here in
    /// order.
    public func moveFrames(to other: ByteBuffer, where moving: (FrameType?) -> Bool) {
        precondition(frontRemaining == 0, "move in the middle of a frame")
        var bytes = buffer.readable
        var kept: [UInt8] = []
        var moved = false
        while let size = FrameParser.pendingFrameSize(in: bytes), size <= bytes.count {
            let frame = UnsafeRawBufferPointer(rebasing: bytes[..<size])
            if moving(FrameType(rawValue: bytes[4])) {
                other.append(frame)
                moved = true
            } else {
                kept.append(contentsOf: frame)
            }
            bytes = UnsafeRawBufferPointer(rebasing: bytes[size...])
        }
        guard moved else { return }
        buffer.clear()
        buffer.append(kept)
    }

    /// Removes the whole frames whose type passes `removing`, keeping the others in order.
    public func removeFrames(where removing: (FrameType?) -> Bool) {
        moveFrames(to: ByteBuffer(capacity: 64), where: removing)
    }

    /// Moves every whole frame into `other` and empties this queue.
    public func moveAll(to other: ByteBuffer) {
        precondition(frontRemaining == 0, "move in the middle of a frame")
        other.append(buffer.readable)
        buffer.clear()
    }

    public func clear() {
        frontRemaining = 0
        buffer.clear()
    }

    /// Empties the queue and gives back its memory.
    public func releaseMemory() {
        frontRemaining = 0
        buffer.releaseMemory()
    }
}
