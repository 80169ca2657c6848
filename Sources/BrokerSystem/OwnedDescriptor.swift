// The one owner of a descriptor: closed exactly once, by `close()` or when the owner lets go of it (deinit).
// Every descriptor the broker and the Swift client open is one of these from the moment it exists (sockets,
// listeners, epoll, eventfds, memfds, descriptors received with SCM_RIGHTS); code that only uses a descriptor
// borrows its `number`.
//
// A borrowed number is good only while its owner lives, and an optimized build may release a local owner
// right after the owner's last use, which may be the read of `number` itself. So a function that needs the
// descriptor takes the owner (the caller keeps an argument alive for the call), and code that reads `number`
// from an owner it would otherwise not touch again keeps the owner in reach with `withExtendedLifetime`.
//
// It takes no lock. Closing is the owner's act, on the owner's thread or under the owner's own lock; a thread
// that only wants a blocked reader woken calls `shutdown` under that same lock (the Swift client does so under
// its state lock, which its reader thread holds to close), so no call ever reaches a number the kernel may
// have given to another open file.
#if canImport(Glibc)
import Glibc
#endif

public final class OwnedDescriptor: @unchecked Sendable {
    /// The descriptor's number while open; -1 once closed (never passed to the kernel then).
    public private(set) var number: CInt

    public init(adopting number: CInt) {
        precondition(number >= 0, "OwnedDescriptor adopts an open descriptor, not \(number)")
        self.number = number
    }

    deinit { close() }

    public var isOpen: Bool { number >= 0 }

    /// Closes the descriptor; later calls do nothing.
    public func close() {
        guard number >= 0 else { return }
        Posix.close(descriptor: number)
        number = -1
    }

    /// Shuts the connection down both ways (waking a thread blocked reading it), if still open.
    @discardableResult
    public func shutdown() -> Bool {
        guard number >= 0 else { return false }
        return Glibc.shutdown(number, CInt(SHUT_RDWR)) == 0
    }
}
