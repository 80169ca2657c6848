// The 40-byte MESSAGE header (rb_message), read and written in place. The body must hold exactly
// the header, control_length and rec_length bytes.

/// Routing and Berkeley DB fields of one replication message.
public struct MessageHeader: Equatable, Sendable {
    public var group: UInt32
    public var source: Int32
    public var destination: Int32
    public var flags: RepFlags
    public var lsn: LSN
    public var controlLength: UInt32
    public var recLength: UInt32
    public var sequence: UInt64

    @inlinable
    public init(
        group: UInt32 = 0, source: Int32 = 0, destination: Int32, flags: RepFlags = [], lsn: LSN = .zero,
        controlLength: UInt32, recLength: UInt32, sequence: UInt64 = 0
    ) {
        self.group = group
        self.source = source
        self.destination = destination
        self.flags = flags
        self.lsn = lsn
        self.controlLength = controlLength
        self.recLength = recLength
        self.sequence = sequence
    }

    /// Bytes of control and rec together.
    @inlinable public var payloadLength: Int { Int(controlLength) + Int(recLength) }

    /// Parses and checks a MESSAGE body; each field is read once.
    @inlinable
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        guard body.count >= Wire.messageHeaderSize, let p = body.baseAddress else {
            throw .malformed(type: .message, reason: "body of \(body.count) bytes is shorter than its header")
        }
        group = p.le32(0)
        source = p.leInt32(4)
        destination = p.leInt32(8)
        flags = RepFlags(rawValue: p.le32(12))
        lsn = LSN(file: p.le32(16), offset: p.le32(20))
        controlLength = p.le32(24)
        recLength = p.le32(28)
        sequence = p.le64(32)
        guard Wire.messageHeaderSize + payloadLength == body.count else {
            throw .malformed(type: .message, reason: "control \(controlLength) + rec \(recLength) bytes "
                + "do not fill a body of \(body.count)")
        }
        guard flags.isSubset(of: .known) else {
            throw .malformed(type: .message, reason: "unknown flags 0x\(String(flags.rawValue, radix: 16))")
        }
    }

    @inlinable
    public func write(to p: UnsafeMutableRawPointer) {
        p.storeLE(group, at: 0)
        p.storeLE(source, at: 4)
        p.storeLE(destination, at: 8)
        p.storeLE(flags.rawValue, at: 12)
        p.storeLE(lsn.file, at: 16)
        p.storeLE(lsn.offset, at: 20)
        p.storeLE(controlLength, at: 24)
        p.storeLE(recLength, at: 28)
        p.storeLE(sequence, at: 32)
    }

    /// Bytes of the whole MESSAGE frame: frame header, this header, control and rec.
    @inlinable public var frameSize: Int { Wire.frameHeaderSize + Wire.messageHeaderSize + payloadLength }

    /// Writes the frame header and this message header at `out` (the first 48 bytes of the frame).
    @inlinable @inline(__always)
    public func writeFrameHeaders(at out: UnsafeMutableRawPointer) {
        FrameParser.writeHeader(.message, bodyLength: Wire.messageHeaderSize + payloadLength, at: out)
        write(to: out + Wire.frameHeaderSize)
    }

    /// Writes the whole frame (`frameSize` bytes) at `out`: the headers, then `payload` and `more`, which
    /// together are control then rec. No allocation.
    @inlinable @inline(__always)
    public func writeFrame(at out: UnsafeMutableRawPointer, payload: UnsafeRawBufferPointer,
                           more: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
        precondition(payload.count + more.count == payloadLength, "payload length disagrees with the header")
        writeFrameHeaders(at: out)
        let cursor = out + Wire.frameHeaderSize + Wire.messageHeaderSize
        if let source = payload.baseAddress, payload.count > 0 { cursor.copyMemory(from: source, byteCount: payload.count) }
        if let source = more.baseAddress, more.count > 0 {
            (cursor + payload.count).copyMemory(from: source, byteCount: more.count)
        }
    }

    /// Appends a whole MESSAGE frame: header, this message header, control, rec. No allocation unless the
    /// buffer must grow.
    public func append(control: UnsafeRawBufferPointer, rec: UnsafeRawBufferPointer, to buffer: ByteBuffer) {
        precondition(control.count == Int(controlLength) && rec.count == Int(recLength), "lengths disagree")
        writeFrame(at: buffer.reserveForWriting(frameSize), payload: control, more: rec)
        buffer.commit(frameSize)
    }

    /// Appends a MESSAGE frame whose payload (control then rec) is already one contiguous region.
    public func append(payload: UnsafeRawBufferPointer, to buffer: ByteBuffer) {
        writeFrame(at: buffer.reserveForWriting(frameSize), payload: payload)
        buffer.commit(frameSize)
    }

    /// The control and rec bytes of a checked MESSAGE body.
    @inlinable
    public static func payload(of body: UnsafeRawBufferPointer, _ header: MessageHeader)
        -> (control: UnsafeRawBufferPointer, rec: UnsafeRawBufferPointer) {
        let all = UnsafeRawBufferPointer(rebasing: body[Wire.messageHeaderSize...])
        let control = UnsafeRawBufferPointer(rebasing: all[..<Int(header.controlLength)])
        let rec = UnsafeRawBufferPointer(rebasing: all[Int(header.controlLength)...])
        return (control, rec)
    }
}
