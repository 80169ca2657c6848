// Single-producer single-consumer byte rings in shared memory (layout: ipc/include/repbroker_ring.h).
// Positions are byte counts that never wrap; offsets are position & (size - 1). The producer owns head,
// the consumer owns tail; each caches the other's value and re-reads it only when the ring looks full or
// empty. Every position and length read from the shared memory is checked against the ring before use:
// the other process may be buggy or hostile, and a bad value must close that client, not crash us.
// Unchecked exclusivity on the per-record state below: one thread owns it and no access to it overlaps
// another; scripts/compare-builds ipc (64 B) ran a third slower with the runtime's checks.
// The per-record operations are inlinable: the broker and the client call them for every message.
import CRepBrokerIPC

public enum RecordKind: UInt32, Sendable {
    /// A whole frame, or the last part of a frame whose earlier parts came as FRAGMENT records.
    case frame = 1
    /// Padding to the end of the data; the next record is at offset 0.
    case wrap = 2
    /// Part of a frame too large for one record; the frame continues in the next record.
    case fragment = 4
}

public struct RingError: Error, CustomStringConvertible, Equatable {
    public let reason: String
    @inlinable public init(_ reason: String) { self.reason = reason }
    public var description: String { "corrupt ring: \(reason)" }
}

/// Offsets and sizes of a segment (rb_shm_header).
public enum RingLayout {
    public static let magic: UInt32 = 0x4853_4252
    public static let version: UInt16 = 2
    public static let headerBytes = 448
    public static let toBrokerControl = 64
    public static let toClientControl = 256
    public static let minimumRingBytes = 4096
    public static let maximumRingBytes = 1 << 30
    public static let defaultRingBytes = 1 << 20
    public static let recordHeaderBytes = 8
    /// How far ahead of the head the producer prefetches (bytes).
    public static let prefetchDistance = 1024

    public static func segmentBytes(ringBytes: Int) -> Int { headerBytes + 2 * ringBytes }

    /// Bytes a record with `payload` bytes takes: header and payload padded to 8.
    @inlinable @inline(__always)
    public static func recordBytes(payload: Int) -> Int { recordHeaderBytes + (payload + 7) & ~7 }

    /// The ring size the broker grants for a request: a power of two within the limits and `maximum`.
    public static func grantedRingBytes(requested: Int, maximum: Int) -> Int {
        var size = minimumRingBytes
        let wanted = min(max(requested, minimumRingBytes), min(maximum, maximumRingBytes))
        while size < wanted { size <<= 1 }
        return size > maximum ? size >> 1 : size
    }

    /// Writes a fresh header into a zeroed segment.
    public static func initialize(_ base: UnsafeMutableRawPointer, ringBytes: Int) {
        base.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: version.littleEndian, toByteOffset: 4, as: UInt16.self)
        base.storeBytes(of: UInt64(ringBytes).littleEndian, toByteOffset: 8, as: UInt64.self)
        base.storeBytes(of: UInt64(segmentBytes(ringBytes: ringBytes)).littleEndian, toByteOffset: 16, as: UInt64.self)
    }

    /// Checks a segment's header; returns its ring size.
    public static func validate(_ base: UnsafeRawPointer, size: Int) throws(RingError) -> Int {
        guard size >= headerBytes else { throw RingError("segment of \(size) bytes is smaller than its header") }
        guard base.le32(0) == magic, base.le16(4) == version else { throw RingError("bad segment magic or version") }
        let ringBytes = Int(truncatingIfNeeded: base.le64(8))
        guard ringBytes >= minimumRingBytes, ringBytes <= maximumRingBytes, ringBytes & (ringBytes - 1) == 0 else {
            throw RingError("ring size \(ringBytes) is not a power of two in range")
        }
        guard base.le64(16) == UInt64(size), segmentBytes(ringBytes: ringBytes) == size else {
            throw RingError("segment size disagrees with its header")
        }
        return ringBytes
    }

    /// The client-to-broker and broker-to-client rings of a segment.
    public static func rings(_ base: UnsafeMutableRawPointer, ringBytes: Int) -> (toBroker: Ring, toClient: Ring) {
        (Ring(control: base + toBrokerControl, data: base + headerBytes, size: ringBytes),
         Ring(control: base + toClientControl, data: base + headerBytes + ringBytes, size: ringBytes))
    }
}

/// One ring: its control block (rb_ring_control) and its data.
public struct Ring: @unchecked Sendable {
    @usableFromInline let control: UnsafeMutableRawPointer
    @usableFromInline let data: UnsafeMutableRawPointer
    public let size: Int
    @inlinable var mask: UInt64 { UInt64(size - 1) }

    public init(control: UnsafeMutableRawPointer, data: UnsafeMutableRawPointer, size: Int) {
        self.control = control
        self.data = data
        self.size = size
    }

    @inlinable var head: UnsafeMutablePointer<UInt64> { control.assumingMemoryBound(to: UInt64.self) }
    @inlinable var tail: UnsafeMutablePointer<UInt64> { (control + 64).assumingMemoryBound(to: UInt64.self) }
    @inlinable var sleeping: UnsafeMutablePointer<UInt32> { (control + 128).assumingMemoryBound(to: UInt32.self) }
    @inlinable var producerWaiting: UnsafeMutablePointer<UInt32> {
        (control + 132).assumingMemoryBound(to: UInt32.self)
    }

    /// Bytes in use, as both sides last published them (for stats).
    public var usedBytes: Int {
        let h = rb_atomic_load_relaxed_u64(head)
        let t = rb_atomic_load_relaxed_u64(tail)
        return h >= t ? Int(min(h - t, UInt64(size))) : 0
    }
}

/// The producing side of a ring.
public final class RingWriter: @unchecked Sendable {
    public let ring: Ring
    @usableFromInline @exclusivity(unchecked) var head: UInt64
    @usableFromInline @exclusivity(unchecked) var cachedTail: UInt64
    /// The largest record payload written (a quarter of the ring); a larger frame is written in parts.
    @inlinable public var maxPayload: Int { ring.size / 4 - RingLayout.recordHeaderBytes }

    public init(_ ring: Ring) {
        self.ring = ring
        // Relaxed is enough: this side is the only writer of head.
        head = rb_atomic_load_relaxed_u64(ring.head)
        // Acquire: space the consumer released must be seen as free only after its reads are done.
        cachedTail = rb_atomic_load_acquire_u64(ring.tail)
    }

    /// Writes one record of `payload` bytes, filled by `fill`; false when the ring has no room now.
    /// The record is visible to the consumer after `publish()`.
    @inlinable @inline(__always)
    public func write(kind: RecordKind, payload: Int, _ fill: (UnsafeMutableRawPointer) -> Void) throws(RingError) -> Bool {
        let need = RingLayout.recordBytes(payload: payload)
        let offset = Int(head & ring.mask)
        let toEnd = ring.size - offset
        let total = need <= toEnd ? need : need + toEnd
        if head &+ UInt64(total) &- cachedTail > UInt64(ring.size) {
            // Acquire pairs with the consumer's release of tail: its reads of that space are done.
            let tail = rb_atomic_load_acquire_u64(ring.tail)
            guard tail <= head, head - tail <= UInt64(ring.size) else {
                throw RingError("tail \(tail) is outside [head - size, head] with head \(head)")
            }
            cachedTail = tail
            if head &+ UInt64(total) &- cachedTail > UInt64(ring.size) { return false }
        }
        var at = ring.data + offset
        if need > toEnd {
            at.storeBytes(of: UInt32(0), toByteOffset: 0, as: UInt32.self)
            at.storeBytes(of: RecordKind.wrap.rawValue.littleEndian, toByteOffset: 4, as: UInt32.self)
            head &+= UInt64(toEnd)
            at = ring.data
        }
        at.storeBytes(of: UInt32(payload).littleEndian, toByteOffset: 0, as: UInt32.self)
        at.storeBytes(of: kind.rawValue.littleEndian, toByteOffset: 4, as: UInt32.self)
        if payload > 0 { fill(at + RingLayout.recordHeaderBytes) }
        head &+= UInt64(need)
        // The lines a few records on are most likely out of this core's cache (the consumer read them last):
        // asking for them now keeps the fence after publish from waiting on their transfer. Two lines, as a
        // small message's record spans about two.
        let ahead = head &+ UInt64(RingLayout.prefetchDistance)
        rb_prefetch_write(ring.data + Int(ahead & ring.mask))
        rb_prefetch_write(ring.data + Int((ahead &+ 64) & ring.mask))
        return true
    }

    /// Makes every record written so far visible to the consumer.
    @inlinable @inline(__always)
    public func publish() {
        // Release: the records' bytes are visible before the head that covers them.
        rb_atomic_store_release_u64(ring.head, head)
    }

    /// After `publish`: whether the consumer said it may sleep; if so the caller must ring its doorbell.
    @inlinable @inline(__always)
    public func consumerNeedsWake() -> Bool {
        // Seq_cst fence between our head store and this load, paired with the consumer's fence between its
        // store of sleeping and its reload of head: one of us sees the other's store, so no wake-up is lost.
        rb_atomic_thread_fence_seq_cst()
        guard rb_atomic_load_seq_cst_u32(ring.sleeping) == 1 else { return false }
        return rb_atomic_exchange_seq_cst_u32(ring.sleeping, 0) == 1
    }

    /// Says the producer waits for space, then re-checks; true when there is room after all.
    public func announceWaiting(forPayload payload: Int) -> Bool {
        rb_atomic_store_seq_cst_u32(ring.producerWaiting, 1)
        rb_atomic_thread_fence_seq_cst()
        cachedTail = rb_atomic_load_acquire_u64(ring.tail)
        let need = RingLayout.recordBytes(payload: payload) * 2
        return head &+ UInt64(need) &- cachedTail <= UInt64(ring.size)
    }
}

/// The consuming side of a ring.
public final class RingReader: @unchecked Sendable {
    public let ring: Ring
    @usableFromInline @exclusivity(unchecked) var tail: UInt64
    @usableFromInline @exclusivity(unchecked) var cachedHead: UInt64

    public init(_ ring: Ring) {
        self.ring = ring
        tail = rb_atomic_load_relaxed_u64(ring.tail)
        // Not the shared head: the first `next` loads it and checks it against the tail (a head below the tail,
        // trusted here, made `cachedHead - tail` overflow: found by scripts/fuzz ring).
        cachedHead = tail
    }

    /// The next FRAME or FRAGMENT record, or nil when the ring is empty. The payload stays valid until `release`.
    @inlinable @inline(__always)
    public func next() throws(RingError) -> (kind: RecordKind, payload: UnsafeRawBufferPointer)? {
        while true {
            if tail == cachedHead {
                // Acquire pairs with the producer's release of head: the records below it are complete.
                let head = rb_atomic_load_acquire_u64(ring.head)
                guard head >= tail, head - tail <= UInt64(ring.size) else {
                    throw RingError("head \(head) is outside [tail, tail + size] with tail \(tail)")
                }
                // Records start 8-aligned: a tail that is not (read from the shared memory at the start) would put
                // a record header across the end of the data (found by scripts/fuzz ring).
                guard tail % UInt64(RingLayout.recordHeaderBytes) == 0 else { throw RingError("tail \(tail) is not 8-aligned") }
                cachedHead = head
                if head == tail { return nil }
            }
            let offset = Int(tail & ring.mask)
            let toEnd = ring.size - offset
            let at = UnsafeRawPointer(ring.data + offset)
            let length = Int(UInt32(littleEndian: at.load(as: UInt32.self)))
            let rawKind = UInt32(littleEndian: at.load(fromByteOffset: 4, as: UInt32.self))
            switch RecordKind(rawValue: rawKind) {
            case .wrap?:
                guard length == 0, UInt64(toEnd) <= cachedHead - tail else { throw RingError("bad wrap record") }
                tail &+= UInt64(toEnd)
            case let kind? /* .frame, .fragment */:
                let need = RingLayout.recordBytes(payload: length)
                guard length > 0, need <= toEnd, UInt64(need) <= cachedHead - tail else {
                    throw RingError("record of \(length) bytes at offset \(offset) runs past the ring or the head")
                }
                // A writer puts at most a quarter of the ring in one record (larger frames go in parts).
                guard length <= ring.size / 4 - RingLayout.recordHeaderBytes else {
                    throw RingError("record of \(length) bytes at offset \(offset) is over ring_bytes / 4 - 8")
                }
                tail &+= UInt64(need)
                return (kind, UnsafeRawBufferPointer(start: at + RingLayout.recordHeaderBytes, count: length))
            case nil:
                throw RingError("unknown record kind \(rawKind) at offset \(offset)")
            }
        }
    }

    /// Hands the space of every record read so far back to the producer.
    @inlinable @inline(__always)
    public func release() {
        // Release: our reads of those records are done before the producer may overwrite them.
        rb_atomic_store_release_u64(ring.tail, tail)
    }

    /// After `release`: whether the producer waits for space; if so the caller must ring its doorbell.
    @inlinable @inline(__always)
    public func producerNeedsWake() -> Bool {
        rb_atomic_thread_fence_seq_cst()
        guard rb_atomic_load_seq_cst_u32(ring.producerWaiting) == 1 else { return false }
        return rb_atomic_exchange_seq_cst_u32(ring.producerWaiting, 0) == 1
    }

    /// Says this consumer may sleep, then re-checks; true when the ring is still empty and it may sleep.
    public func prepareToSleep() -> Bool {
        rb_atomic_store_seq_cst_u32(ring.sleeping, 1)
        // Paired with the producer's fence in consumerNeedsWake (see there).
        rb_atomic_thread_fence_seq_cst()
        // The released tail: the consumer releases what it read before it says it sleeps.
        if rb_atomic_load_acquire_u64(ring.head) != rb_atomic_load_acquire_u64(ring.tail) {
            rb_atomic_store_seq_cst_u32(ring.sleeping, 0)
            return false
        }
        return true
    }

    /// Clears the sleeping flag after waking.
    public func awake() { rb_atomic_store_seq_cst_u32(ring.sleeping, 0) }

    /// Whether records are waiting (re-reads head).
    public var hasRecords: Bool { tail != rb_atomic_load_acquire_u64(ring.head) }
}
