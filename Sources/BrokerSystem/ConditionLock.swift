// A pthread mutex with one condition variable, for the blocking client API (Synchronization.Mutex has no
// condition). Never used on the broker's event loop.
#if canImport(Glibc)
import Glibc
#endif

public final class ConditionLock: @unchecked Sendable {
    /// Mutex and condition on cache lines of their own: two locks used by different threads (a client's
    /// write lock and its state lock) must not share a line, or every lock operation moves it between cores.
    private let storage = UnsafeMutableRawPointer.allocate(byteCount: 2 * ConditionLock.line, alignment: ConditionLock.line)
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline let condition: UnsafeMutablePointer<pthread_cond_t>
    private static let line = 128

    public init() {
        precondition(MemoryLayout<pthread_mutex_t>.size <= Self.line && MemoryLayout<pthread_cond_t>.size <= Self.line)
        mutex = storage.bindMemory(to: pthread_mutex_t.self, capacity: 1)
        condition = (storage + Self.line).bindMemory(to: pthread_cond_t.self, capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        storage.deallocate()
    }

    @inlinable public func lock() { pthread_mutex_lock(mutex) }
    @inlinable public func unlock() { pthread_mutex_unlock(mutex) }
    /// Takes the lock if it is free; true when taken.
    @inlinable public func tryLock() -> Bool { pthread_mutex_trylock(mutex) == 0 }

    @inlinable
    public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    public func broadcast() { pthread_cond_broadcast(condition) }

    /// Waits (lock held) until signalled or until the monotonic `deadline` in nanoseconds; false on timeout.
    @discardableResult
    public func wait(untilNanoseconds deadline: UInt64?) -> Bool {
        guard let deadline else {
            pthread_cond_wait(condition, mutex)
            return true
        }
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(condition, mutex, &ts) != ETIMEDOUT
    }
}

/// Starts a detached pthread running `body`; used by the client's reader thread.
public func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    pthread_create(&thread, nil, { raw in
        guard let raw else { return nil }
        let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
        box.body()
        return nil
    }, box)
    pthread_detach(thread)
}
