// Shared-memory segments for the ring transport: sealed memfds (no name anywhere, so nothing outlives
// the processes that map them; sealed, so neither side can shrink a mapping under the other), mapped
// MAP_SHARED and unmapped exactly once.
import CRepBrokerIPC
#if canImport(Glibc)
import Glibc
#endif

public final class SharedSegment: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let size: Int

    private init(base: UnsafeMutableRawPointer, size: Int) {
        self.base = base
        self.size = size
    }

    deinit { munmap(base, size) }

    /// Creates a sealed segment of `size` zeroed bytes; returns it and its descriptor (to pass on, then close).
    public static func create(size: Int, name: String = "repbroker") throws(SystemError) -> (SharedSegment, OwnedDescriptor) {
        let memfd = OwnedDescriptor(adopting: try Posix.call("memfd_create") { rb_memfd_sealed(name, UInt64(size)) })
        return (try map(fd: memfd.number, size: size), memfd)
    }

    /// Maps a received segment after checking its seals and size (the mapping outlives the descriptor).
    public static func map(received memfd: OwnedDescriptor, expectedSize: Int) throws(SystemError) -> SharedSegment {
        let fd = memfd.number
        defer { withExtendedLifetime(memfd) {} }
        guard rb_memfd_is_sealed(fd) != 0 else { throw SystemError("shared segment is not sealed", Errno(rawValue: EPERM)) }
        var info = stat()
        _ = try Posix.call("fstat") { fstat(fd, &info) }
        guard Int(info.st_size) == expectedSize else {
            throw SystemError("shared segment is \(info.st_size) bytes, not \(expectedSize)", Errno(rawValue: EINVAL))
        }
        return try map(fd: fd, size: expectedSize)
    }

    private static func map(fd: CInt, size: Int) throws(SystemError) -> SharedSegment {
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw SystemError("mmap", .current)
        }
        return SharedSegment(base: base, size: size)
    }
}


extension Socket {
    /// Sends `bytes` with descriptors attached; returns the bytes sent.
    public static func send(_ bytes: [UInt8], with fds: [CInt], on socket: CInt) throws(SystemError) -> Int {
        let sent = bytes.withUnsafeBytes { raw in
            fds.withUnsafeBufferPointer { rb_send_with_fds(socket, raw.baseAddress, raw.count, $0.baseAddress, CInt($0.count)) }
        }
        guard sent >= 0 else { throw SystemError("sendmsg(SCM_RIGHTS)", .current) }
        return sent
    }

    /// Receives into `buffer`, collecting any descriptors that came with the bytes (owned from then on).
    public static func receive(into buffer: UnsafeMutableRawBufferPointer, on socket: CInt,
                               fds: inout [OwnedDescriptor]) throws(SystemError) -> Int {
        var received = [CInt](repeating: -1, count: 4)
        var count: CInt = 0
        let n = received.withUnsafeMutableBufferPointer {
            rb_receive_with_fds(socket, buffer.baseAddress, buffer.count, $0.baseAddress, 4, &count)
        }
        guard n >= 0 else { throw SystemError("recvmsg", .current) }
        fds.append(contentsOf: received.prefix(Int(count)).map { OwnedDescriptor(adopting: $0) })
        return n
    }
}
