// A growable linear byte buffer with a read and a write index, used for socket input (parse in place)
// and output (frames appended back to back, written with one call). Growth doubles; reading everything
// resets both indices; compaction moves the unread tail only when the front holds more than half.
// Unchecked exclusivity on the per-record state below: one thread owns it and no access to it overlaps
// another; scripts/compare-builds ipc (64 B) ran a third slower with the runtime's checks.

/// A reusable byte buffer owned by one connection.
public final class ByteBuffer {
    @exclusivity(unchecked) public private(set) var base: UnsafeMutableRawPointer
    @exclusivity(unchecked) public private(set) var capacity: Int
    @exclusivity(unchecked) public private(set) var readIndex = 0
    @exclusivity(unchecked) public private(set) var writeIndex = 0
    public let initialCapacity: Int

    public init(capacity: Int) {
        precondition(capacity > 0, "ByteBuffer needs a positive capacity")
        initialCapacity = capacity
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    public var readableBytes: Int { writeIndex - readIndex }
    public var isEmpty: Bool { writeIndex == readIndex }

    public var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + readIndex, count: writeIndex - readIndex)
    }

    public var writable: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + writeIndex, count: capacity - writeIndex)
    }

    /// Marks `count` bytes at the front as read.
    public func consume(_ count: Int) {
        precondition(count <= readableBytes, "consumed more than is readable")
        readIndex += count
        if readIndex == writeIndex {
            readIndex = 0
            writeIndex = 0
        }
    }

    /// Marks `count` bytes written into `writable` as readable.
    public func commit(_ count: Int) {
        precondition(count <= capacity - writeIndex, "committed past the end")
        writeIndex += count
    }

    /// Makes room for at least `count` more bytes after the readable ones.
    public func reserve(_ count: Int) {
        if capacity - writeIndex >= count { return }
        let live = readableBytes
        if live + count <= capacity && readIndex >= capacity / 2 {
            (base).copyMemory(from: base + readIndex, byteCount: live)
        } else {
            var newCapacity = capacity
            while newCapacity < live + count { newCapacity *= 2 }
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
            fresh.copyMemory(from: base + readIndex, byteCount: live)
            base.deallocate()
            base = fresh
            capacity = newCapacity
        }
        readIndex = 0
        writeIndex = live
        if capacity - writeIndex < count { reserve(count) }
    }

    /// Reserves `count` bytes and returns where they start; `commit(count)` after filling them.
    public func reserveForWriting(_ count: Int) -> UnsafeMutableRawPointer {
        reserve(count)
        return base + writeIndex
    }

    public func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, let source = bytes.baseAddress else { return }
        reserve(bytes.count)
        (base + writeIndex).copyMemory(from: source, byteCount: bytes.count)
        writeIndex += bytes.count
    }

    public func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Puts `bytes` in front of the readable ones.
    public func prepend(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        if readIndex < bytes.count {
            reserve(bytes.count)
            let live = readableBytes
            (base + bytes.count).copyMemory(from: base + readIndex, byteCount: live)
            readIndex = bytes.count
            writeIndex = bytes.count + live
        }
        readIndex -= bytes.count
        bytes.withUnsafeBytes { raw in
            if let source = raw.baseAddress { (base + readIndex).copyMemory(from: source, byteCount: raw.count) }
        }
    }

    /// Exchanges memory and contents with `other` (no copy).
    public func swapContents(with other: ByteBuffer) {
        swap(&base, &other.base)
        swap(&capacity, &other.capacity)
        swap(&readIndex, &other.readIndex)
        swap(&writeIndex, &other.writeIndex)
    }

    /// Capacity kept after draining: smaller growth stays allocated, so bursts do not reallocate.
    public static let retainedCapacity = 1 << 20

    /// Returns to the initial capacity when empty and grown past `retainedCapacity` (a large message).
    public func shrinkIfIdle() {
        guard isEmpty, capacity > max(initialCapacity, Self.retainedCapacity) else { return }
        returnToInitialCapacity()
    }

    private func returnToInitialCapacity() {
        base.deallocate()
        base = .allocate(byteCount: initialCapacity, alignment: 16)
        capacity = initialCapacity
    }

    /// Drops everything but keeps the memory (up to `retainedCapacity` times 64), for a buffer refilled at once.
    public func reset() {
        readIndex = 0
        writeIndex = 0
        if capacity > Self.retainedCapacity * 64 { shrinkIfIdle() }
    }

    /// Drops everything and returns to the initial capacity, for a buffer that will not be used again soon.
    public func releaseMemory() {
        readIndex = 0
        writeIndex = 0
        if capacity > initialCapacity { returnToInitialCapacity() }
    }

    /// Drops everything.
    public func clear() {
        readIndex = 0
        writeIndex = 0
        shrinkIfIdle()
    }
}
