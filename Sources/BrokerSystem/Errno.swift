// Typed errno values and the error thrown by every failed system call: which call, which errno.
#if canImport(Glibc)
import Glibc
#endif

/// An `errno` value with a readable description.
public struct Errno: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: CInt
    public init(rawValue: CInt) { self.rawValue = rawValue }

    public static var current: Errno { Errno(rawValue: errno) }

    public static let interrupted = Errno(rawValue: EINTR)
    public static let wouldBlock = Errno(rawValue: EAGAIN)
    public static let inProgress = Errno(rawValue: EINPROGRESS)
    public static let connectionRefused = Errno(rawValue: ECONNREFUSED)
    public static let noSuchFile = Errno(rawValue: ENOENT)
    public static let addressInUse = Errno(rawValue: EADDRINUSE)
    public static let brokenPipe = Errno(rawValue: EPIPE)
    public static let noSuchProcess = Errno(rawValue: ESRCH)

    public var description: String {
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return "\(String(cString: text)) (errno \(rawValue))"
    }
}

/// A failed system call: the call's name and its errno.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let errno: Errno
    public init(_ call: String, _ errno: Errno) {
        self.call = call
        self.errno = errno
    }
    public var description: String { "\(call): \(errno)" }
}

/// The outcome of a non-blocking I/O call: `EAGAIN` is a value, not an error.
public enum IOResult<T>: Equatable where T: Equatable {
    case processed(T)
    case wouldBlock
}
