// epoll and eventfd, through the C shim (struct epoll_event is packed on x86_64).
import CRepBrokerIPC
#if canImport(Glibc)
import Glibc
#endif

/// Interest and readiness bits, mirroring EPOLLIN/OUT/ERR/HUP.
public struct EpollEvents: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let readable = EpollEvents(rawValue: 0x001)
    public static let writable = EpollEvents(rawValue: 0x004)
    public static let error = EpollEvents(rawValue: 0x008)
    public static let hangup = EpollEvents(rawValue: 0x010)
    /// Readiness that a read handles: data, end of stream or an error.
    public static let readReadiness = EpollEvents(rawValue: 0x001 | 0x008 | 0x010)
    public static let readableAndWritable = EpollEvents(rawValue: 0x001 | 0x004)
}

/// An owned epoll instance.
public final class Epoll {
    private let owned: OwnedDescriptor
    public var descriptor: CInt { owned.number }
    private var events: UnsafeMutablePointer<rb_epoll_event>
    public static let batchSize = 256

    public init() throws(SystemError) {
        owned = OwnedDescriptor(adopting: try Posix.call("epoll_create1") { rb_epoll_create() })
        events = .allocate(capacity: Epoll.batchSize)
    }

    deinit { events.deallocate() }

    public func add(descriptor fd: CInt, events interest: EpollEvents, token: UInt64) throws(SystemError) {
        _ = try Posix.call("epoll_ctl(ADD)") { rb_epoll_ctl(descriptor, CInt(RB_EPOLL_CTL_ADD), fd, interest.rawValue, token) }
    }

    public func modify(descriptor fd: CInt, events interest: EpollEvents, token: UInt64) throws(SystemError) {
        _ = try Posix.call("epoll_ctl(MOD)") { rb_epoll_ctl(descriptor, CInt(RB_EPOLL_CTL_MOD), fd, interest.rawValue, token) }
    }

    public func remove(descriptor fd: CInt) {
        _ = rb_epoll_ctl(descriptor, CInt(RB_EPOLL_CTL_DEL), fd, 0, 0)
    }

    /// Waits up to `timeoutMilliseconds` (-1: for ever) and calls `body` for each ready descriptor.
    public func wait(
        timeoutMilliseconds: Int32, _ body: (_ token: UInt64, _ events: EpollEvents) -> Void
    ) throws(SystemError) {
        let count: CInt
        while true {
            let n = rb_epoll_wait(descriptor, events, CInt(Epoll.batchSize), timeoutMilliseconds)
            if n >= 0 { count = n; break }
            let err = Errno.current
            if err == .interrupted { count = 0; break }
            throw SystemError("epoll_wait", err)
        }
        for i in 0..<Int(count) {
            body(events[i].data, EpollEvents(rawValue: events[i].events))
        }
    }
}

/// An owned non-blocking eventfd used to wake the event loop from another thread.
public final class EventFd: @unchecked Sendable {
    private let owned: OwnedDescriptor
    /// Signalled from any thread; closed only when the last reference goes.
    public var descriptor: CInt { owned.number }

    public init() throws(SystemError) {
        owned = OwnedDescriptor(adopting: try Posix.call("eventfd") { rb_eventfd(0) })
    }

    /// An eventfd received from another process.
    public init(adopting descriptor: OwnedDescriptor) { owned = descriptor }

    /// Adds one to the counter; safe from any thread.
    public func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(descriptor, $0.baseAddress, 8) }
    }

    /// Resets the counter after a wake-up.
    public func drain() {
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { Glibc.read(descriptor, $0.baseAddress, 8) }
    }
}
