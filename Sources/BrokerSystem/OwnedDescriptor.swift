// A descriptor owned by one object: closed exactly once (by `close()` or at deinit), and `shutdown` never
// reaches the number once it is closed, when the kernel may already have given it to another open file.
#if canImport(Glibc)
import Glibc
#endif

public final class OwnedDescriptor: @unchecked Sendable {
    /// The descriptor's number. Valid for I/O only while the owner knows this object is open: the owner closes
    /// it (on one thread), other threads use `shutdown`, which checks.
    public let number: CInt
    /// A pthread mutex (ThreadSanitizer sees it; it does not see the futex under Synchronization's Mutex).
    private let lock = ConditionLock()
    /// Guarded by `lock`.
    private var open = true

    public init(adopting number: CInt) {
        precondition(number >= 0, "OwnedDescriptor adopts an open descriptor, not \(number)")
        self.number = number
    }

    deinit { close() }

    public var isOpen: Bool { lock.withLock { open } }

    /// Closes the descriptor; later calls do nothing.
    public func close() {
        lock.withLock {
            guard open else { return }
            open = false
            Posix.close(descriptor: number)
        }
    }

    /// Shuts the connection down both ways (waking a thread blocked reading it), if still open.
    @discardableResult
    public func shutdown() -> Bool {
        lock.withLock {
            guard open else { return false }
            return Glibc.shutdown(number, CInt(SHUT_RDWR)) == 0
        }
    }
}
