// Splits a byte stream into frames. The header is validated (magic, reserved, type, length against the
// limit for its type) before the body is awaited, so an oversized length closes a connection at once.

/// Why a frame was rejected; the connection that sent it is closed with this reason.
public enum WireError: Error, Equatable, CustomStringConvertible {
    case badMagic(UInt8)
    case reservedNotZero
    case unknownType(UInt8)
    case tooLarge(type: FrameType, length: Int, limit: Int)
    case malformed(type: FrameType, reason: String)
    case unexpected(type: FrameType, state: String)
    /// A client's frame before its REGISTER.
    case notRegistered(type: FrameType)

    public var description: String {
        switch self {
        case .badMagic(let byte): return "bad frame magic 0x\(String(byte, radix: 16))"
        case .reservedNotZero: return "reserved header bits are not zero"
        case .unknownType(let type): return "unknown frame type 0x\(String(type, radix: 16))"
        case .tooLarge(let type, let length, let limit):
            return "\(type) frame of \(length) bytes exceeds the limit of \(limit)"
        case .malformed(let type, let reason): return "malformed \(type) frame: \(reason)"
        case .unexpected(let type, let state): return "unexpected \(type) frame \(state)"
        case .notRegistered(let type): return "\(type) frame before REGISTER"
        }
    }

    /// The ERROR code that tells the other side why it is being closed.
    public var code: ErrorCode {
        switch self {
        case .tooLarge: return .tooLarge
        case .notRegistered: return .notRegistered
        default: return .badFrame
        }
    }
}

/// One frame found in a buffer: its type and its body, pointing into the buffer.
public struct Frame {
    public let type: FrameType
    public let body: UnsafeRawBufferPointer

    @inlinable init(type: FrameType, body: UnsafeRawBufferPointer) {
        self.type = type
        self.body = body
    }

    /// Header plus body: what to consume after handling it.
    @inlinable public var totalSize: Int { Wire.frameHeaderSize + body.count }
    /// Header and body, as they lie in the buffer.
    @inlinable public var whole: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: body.baseAddress.unsafelyUnwrapped - Wire.frameHeaderSize, count: totalSize)
    }
}

// The per-frame functions are inlinable: every module's per-message path calls them.
public enum FrameParser {
    /// The largest body accepted for a frame type, given the link's message limit (control + rec).
    @inlinable @inline(__always)
    public static func bodyLimit(for type: FrameType, maxMessage: Int) -> Int {
        switch type {
        case .message: return Wire.messageHeaderSize + maxMessage
        case .channel: return ChannelFrame.headerSize + Wire.maxGroupName + maxMessage
        default: return Wire.maxControlBody
        }
    }

    /// The first frame in `bytes`, or nil when more bytes are needed. Each header field is read once.
    @inlinable
    public static func next(in bytes: UnsafeRawBufferPointer, maxMessage: Int) throws(WireError) -> Frame? {
        guard bytes.count >= Wire.frameHeaderSize, let start = bytes.baseAddress else { return nil }
        let length = Int(start.le32(0))
        let magic = start.load(fromByteOffset: 5, as: UInt8.self)
        guard magic == Wire.frameMagic else { throw .badMagic(magic) }
        guard start.le16(6) == 0 else { throw .reservedNotZero }
        let rawType = start.load(fromByteOffset: 4, as: UInt8.self)
        guard let type = rawType == FrameType.message.rawValue ? .message : FrameType(rawValue: rawType) else {
            throw .unknownType(rawType)
        }
        let limit = bodyLimit(for: type, maxMessage: maxMessage)
        guard length <= limit else { throw .tooLarge(type: type, length: length, limit: limit) }
        guard bytes.count - Wire.frameHeaderSize >= length else { return nil }
        return Frame(type: type, body: UnsafeRawBufferPointer(start: start + Wire.frameHeaderSize, count: length))
    }

    /// Bytes the frame at the front of `bytes` needs in all, once its header is readable (nil before).
    @inlinable
    public static func pendingFrameSize(in bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= Wire.frameHeaderSize, let start = bytes.baseAddress else { return nil }
        return Wire.frameHeaderSize + Int(start.le32(0))
    }

    /// Writes a frame header at `pointer`.
    @inlinable @inline(__always)
    public static func writeHeader(_ type: FrameType, bodyLength: Int, at pointer: UnsafeMutableRawPointer) {
        pointer.storeLE(UInt32(bodyLength), at: 0)
        pointer.storeBytes(of: type.rawValue, toByteOffset: 4, as: UInt8.self)
        pointer.storeBytes(of: Wire.frameMagic, toByteOffset: 5, as: UInt8.self)
        pointer.storeLE(UInt16(0), at: 6)
    }

    /// Appends a whole non-MESSAGE frame to `buffer`.
    public static func append(_ type: FrameType, body: [UInt8], to buffer: ByteBuffer) {
        let out = buffer.reserveForWriting(Wire.frameHeaderSize + body.count)
        writeHeader(type, bodyLength: body.count, at: out)
        body.withUnsafeBytes { raw in
            if let source = raw.baseAddress { (out + Wire.frameHeaderSize).copyMemory(from: source, byteCount: raw.count) }
        }
        buffer.commit(Wire.frameHeaderSize + body.count)
    }

    /// A whole non-MESSAGE frame as bytes.
    public static func encode(_ type: FrameType, body: [UInt8]) -> [UInt8] {
        var writer = ByteWriter()
        writer.put(UInt32(body.count))
        writer.put(type.rawValue)
        writer.put(Wire.frameMagic)
        writer.put(UInt16(0))
        writer.put(body)
        return writer.bytes
    }
}
