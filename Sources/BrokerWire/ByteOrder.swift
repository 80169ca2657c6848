// Little-endian loads and stores at byte offsets; no alignment is assumed. Inlinable: other modules'
// per-message paths use them.

extension UnsafeRawPointer {
    @inlinable @inline(__always) func le16(_ offset: Int) -> UInt16 {
        UInt16(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inlinable @inline(__always) func le32(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inlinable @inline(__always) func le64(_ offset: Int) -> UInt64 {
        UInt64(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
    @inlinable @inline(__always) func leInt32(_ offset: Int) -> Int32 { Int32(bitPattern: le32(offset)) }
}

extension UnsafeMutableRawPointer {
    @inlinable @inline(__always) func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}

/// Appends little-endian fields to a byte array; for control frames, off the hot path.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func put(_ raw: some Sequence<UInt8>) { bytes.append(contentsOf: raw) }
}
