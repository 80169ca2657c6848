// A descriptor owned by one object: closed exactly once (by `close()` or at deinit), and `shutdown` never
// reaches the number once it is closed, when the kernel may already have given it to another open file.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public final class OwnedDescriptor: Sendable {
    /// The descriptor's number. Valid for I/O only while the owner knows this object is open: the owner closes
    /// it (on one thread), other threads use `shutdown`, which checks.
    public let number: CInt
    private let open: Mutex<Bool>

    public init(adopting number: CInt) {
        precondition(number >= 0, "OwnedDescriptor adopts an open descriptor, not \(number)")
        self.number = number
        open = Mutex(true)
    }

    deinit { close() }

    public var isOpen: Bool { open.withLock { $0 } }

    /// Closes the descriptor; later calls do nothing.
    public func close() {
        open.withLock { isOpen in
            guard isOpen else { return }
            isOpen = false
            Posix.close(descriptor: number)
        }
    }

    /// Shuts the connection down both ways (waking a thread blocked reading it), if still open.
    @discardableResult
    public func shutdown() -> Bool {
        open.withLock { isOpen in
            guard isOpen else { return false }
            return Glibc.shutdown(number, CInt(SHUT_RDWR)) == 0
        }
    }
}
