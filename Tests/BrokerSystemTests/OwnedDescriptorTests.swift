// OwnedDescriptor: closed exactly once, and a shutdown after the close never reaches the number's next owner (no
// lock: the owner closes, and a thread that shuts down does so under the owner's lock).
import BrokerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

func socketPair() throws -> (CInt, CInt) {
    var fds: [CInt] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
        throw SystemError("socketpair", .current)
    }
    return (fds[0], fds[1])
}

@Suite struct OwnedDescriptorTests {
    @Test func closeTwiceClosesOnce() throws {
        let (a, b) = try socketPair()
        defer { Posix.close(descriptor: b) }
        let owned = OwnedDescriptor(adopting: a)
        owned.close()
        owned.close()  // a second close would be EBADF, which stops the process
        #expect(!owned.isOpen)
        // The peer sees the end: the socket was closed. (Not fcntl on the number: tests run in parallel, and
        // another one may already hold that number again.)
        var byte: UInt8 = 0
        #expect(read(b, &byte, 1) == 0, "the number was closed")
    }

    @Test func shutdownAfterCloseDoesNotTouchTheNumbersNextOwner() throws {
        let (a, b) = try socketPair()
        let owned = OwnedDescriptor(adopting: a)
        owned.close()
        Posix.close(descriptor: b)
        // The kernel hands out the lowest free number: the next pair takes the number `owned` had.
        let (c, d) = try socketPair()
        defer {
            Posix.close(descriptor: c)
            Posix.close(descriptor: d)
        }
        // Usually this pair has the number back (the kernel hands out the lowest free one); a test running in
        // parallel may have taken it instead. Either way the closed owner must not touch it.
        #expect(!owned.shutdown(), "shutdown of a closed descriptor does nothing")
        var byte: UInt8 = 7
        #expect(send(c, &byte, 1, CInt(MSG_NOSIGNAL)) == 1, "the new owner's socket still works")
        #expect(send(d, &byte, 1, CInt(MSG_NOSIGNAL)) == 1)
    }

    @Test func shutdownWakesABlockedReader() throws {
        let (a, b) = try socketPair()
        defer { Posix.close(descriptor: b) }
        let owned = OwnedDescriptor(adopting: a)
        #expect(owned.shutdown())
        var buffer = [UInt8](repeating: 0, count: 8)
        #expect(read(a, &buffer, 8) == 0, "a read after shutdown sees the end at once")
        owned.close()
    }
}
