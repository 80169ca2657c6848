// Socket creation and options. Every socket the broker makes is SOCK_CLOEXEC; listeners and peer
// connections are SOCK_NONBLOCK as well. A socket is made owned (OwnedDescriptor): one that fails to bind,
// listen or connect is closed by letting go of it.
import CRepBrokerIPC
#if canImport(Glibc)
import Glibc
#endif

public enum Socket {
    /// The longest path a Unix socket address can hold (sun_path, including its NUL).
    public static let maxUnixPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path)

    public struct PathTooLong: Error, CustomStringConvertible {
        public let path: String
        public var description: String {
            "socket path is \(path.utf8.count) bytes, the limit is \(Socket.maxUnixPathBytes - 1): \(path)"
        }
    }

    static func withUnixAddress<R>(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
    ) throws(PathTooLong) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < maxUnixPathBytes else { throw PathTooLong(path: path) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    private static func make(family: CInt, nonBlocking: Bool) throws(SystemError) -> OwnedDescriptor {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        return OwnedDescriptor(adopting: try Posix.call("socket") { Glibc.socket(family, type, 0) })
    }

    /// A non-blocking TCP listener with SO_REUSEADDR.
    public static func listenTCP(_ address: SocketAddress, backlog: CInt = 128) throws(SystemError) -> OwnedDescriptor {
        let socket = try make(family: address.family, nonBlocking: true)
        let fd = socket.number
        var one: CInt = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        _ = try Posix.call("bind(\(address))") { address.withSockaddr { Glibc.bind(fd, $0, $1) } }
        _ = try Posix.call("listen") { Glibc.listen(fd, backlog) }
        return socket
    }

    /// Starts a non-blocking TCP connect; the connection is usable once the socket is writable and
    /// `pendingError` is nil.
    public static func connectTCP(_ address: SocketAddress) throws(SystemError) -> OwnedDescriptor {
        let socket = try make(family: address.family, nonBlocking: true)
        let rc = address.withSockaddr { Glibc.connect(socket.number, $0, $1) }
        if rc != 0 && Errno.current != .inProgress && Errno.current != .interrupted {
            throw SystemError("connect(\(address))", .current)
        }
        return socket
    }

    /// A blocking TCP connection with TCP_NODELAY (for benchmark and test clients, not the broker).
    public static func connectTCPBlocking(_ address: SocketAddress) throws(SystemError) -> OwnedDescriptor {
        let socket = try make(family: address.family, nonBlocking: false)
        while address.withSockaddr({ Glibc.connect(socket.number, $0, $1) }) != 0 {
            let err = Errno.current
            if err == .interrupted { continue }
            throw SystemError("connect(\(address))", err)
        }
        setNoDelay(socket.number)
        return socket
    }

    /// The pending error of a socket (SO_ERROR), nil when none.
    public static func pendingError(_ fd: CInt) -> Errno? {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) == 0 else { return Errno.current }
        return value == 0 ? nil : Errno(rawValue: value)
    }

    public static func setNoDelay(_ fd: CInt) {
        var one: CInt = 1
        _ = setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
    }

    /// Wakes a writer (epoll writable) only while fewer than `bytes` are unsent in the kernel: the kernel's
    /// send queue stays short and the data waits in the application's queue, where it can be scheduled.
    public static func setNotSentLowWatermark(_ fd: CInt, bytes: CInt) {
        var value = bytes
        // TCP_NOTSENT_LOWAT (Linux 3.12).
        _ = setsockopt(fd, CInt(IPPROTO_TCP), 25, &value, socklen_t(MemoryLayout<CInt>.size))
    }

    public static func setBufferSizes(_ fd: CInt, bytes: CInt) {
        var value = bytes
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, socklen_t(MemoryLayout<CInt>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, socklen_t(MemoryLayout<CInt>.size))
    }

    /// The local port a TCP socket is bound to.
    public static func localPort(_ fd: CInt) -> UInt16? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        return withUnsafeBytes(of: &storage) { raw in
            // sin_port and sin6_port sit at offset 2 in network byte order.
            UInt16(raw[2]) << 8 | UInt16(raw[3])
        }
    }

    /// Accepts one connection as non-blocking and close-on-exec; nil when none is pending.
    public static func accept(_ listener: CInt) throws(SystemError) -> OwnedDescriptor? {
        switch try Posix.ioCall("accept4", { Int(rb_accept_nonblocking(listener)) }) {
        case .processed(let fd): return OwnedDescriptor(adopting: CInt(fd))
        case .wouldBlock: return nil
        }
    }

    /// A non-blocking Unix stream listener at `path` with the given file mode.
    public static func listenUnix(path: String, mode: mode_t) throws -> OwnedDescriptor {
        let socket = try make(family: AF_UNIX, nonBlocking: true)
        let fd = socket.number
        if try withUnixAddress(path, { Glibc.bind(fd, $0, $1) }) != 0 {
            throw SystemError("bind(\(path))", .current)
        }
        _ = try Posix.call("chmod(\(path))") { chmod(path, mode) }
        _ = try Posix.call("listen") { Glibc.listen(fd, 128) }
        return socket
    }

    /// A connected Unix stream socket (blocking unless asked otherwise).
    public static func connectUnix(path: String, nonBlocking: Bool = false) throws -> OwnedDescriptor {
        let socket = try make(family: AF_UNIX, nonBlocking: nonBlocking)
        while try withUnixAddress(path, { Glibc.connect(socket.number, $0, $1) }) != 0 {
            let err = Errno.current
            if err != .interrupted { throw SystemError("connect(\(path))", err) }
        }
        return socket
    }

    /// Credentials (pid, uid, gid) of the process at the other end of a Unix socket.
    public static func peerCredentials(_ fd: CInt) -> (pid: pid_t, uid: uid_t, gid: gid_t)? {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        guard rb_peer_credentials(fd, &pid, &uid, &gid) == 0 else { return nil }
        return (pid, uid, gid)
    }
}
