// Raw system calls. Each wrapper is @inline(never) so nothing runs between the -1 return and reading errno.
// EINTR is retried here; EAGAIN comes back as `.wouldBlock`; close never retries.
import CRepBrokerIPC
#if canImport(Glibc)
import Glibc
#endif

public enum Posix {
    /// Hands freed heap memory back to the system (malloc_trim): glibc otherwise keeps what a burst of
    /// short-lived buffers used. Walks the heap: call it seldom, off any per-message path.
    public static func releaseFreedMemory() { _ = rb_malloc_trim() }

    /// Runs `body` with no signal blocked on the calling thread, then restores the thread's mask. A child
    /// process inherits the mask of the thread that starts it, and Dispatch's and the test runners' worker
    /// threads block SIGTERM and SIGINT: started from one of them, a child would never see its stop signal.
    public static func withNoSignalsBlocked<T>(_ body: () throws -> T) rethrows -> T {
        var none = sigset_t()
        var saved = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        return try body()
    }

    /// Runs `body` with SIGPIPE blocked on the calling thread, and takes the one it raised, if any: a write to a
    /// pipe or socket whose reader is gone then fails with EPIPE instead of ending the process (for harnesses
    /// that cannot ignore SIGPIPE process-wide: their children would inherit that).
    public static func withoutSIGPIPE<T>(_ body: () throws -> T) rethrows -> T {
        var pipe = sigset_t()
        var saved = sigset_t()
        sigemptyset(&pipe)
        sigaddset(&pipe, SIGPIPE)
        var pending = sigset_t()
        sigpending(&pending)
        let alreadyPending = sigismember(&pending, SIGPIPE) == 1
        pthread_sigmask(SIG_BLOCK, &pipe, &saved)
        defer {
            sigpending(&pending)
            if !alreadyPending && sigismember(&pending, SIGPIPE) == 1 {
                var zero = timespec(tv_sec: 0, tv_nsec: 0)
                _ = sigtimedwait(&pipe, nil, &zero)
            }
            pthread_sigmask(SIG_SETMASK, &saved, nil)
        }
        return try body()
    }

    @inline(never)
    static func call<T: FixedWidthInteger>(_ name: String, _ body: () -> T) throws(SystemError) -> T {
        while true {
            let result = body()
            if result != -1 { return result }
            let err = Errno.current
            if err == .interrupted { continue }
            throw SystemError(name, err)
        }
    }

    @inline(never)
    static func ioCall(_ name: String, _ body: () -> Int) throws(SystemError) -> IOResult<Int> {
        while true {
            let result = body()
            if result >= 0 { return .processed(result) }
            let err = Errno.current
            if err == .interrupted { continue }
            if err == .wouldBlock { return .wouldBlock }
            throw SystemError(name, err)
        }
    }

    public static func read(
        descriptor: CInt, into buffer: UnsafeMutableRawBufferPointer
    ) throws(SystemError) -> IOResult<Int> {
        try ioCall("read") { Glibc.read(descriptor, buffer.baseAddress, buffer.count) }
    }

    public static func write(
        descriptor: CInt, from buffer: UnsafeRawBufferPointer
    ) throws(SystemError) -> IOResult<Int> {
        try ioCall("write") { Glibc.send(descriptor, buffer.baseAddress, buffer.count, CInt(MSG_NOSIGNAL)) }
    }

    public static func writev(
        descriptor: CInt, iovecs: UnsafeBufferPointer<iovec>
    ) throws(SystemError) -> IOResult<Int> {
        try ioCall("writev") { Glibc.writev(descriptor, iovecs.baseAddress, CInt(iovecs.count)) }
    }

    /// Closes a descriptor once; EINTR is not retried (Linux has already released the descriptor). EBADF means
    /// this process closed a number it did not own (a double close, which may have closed another file): a bug
    /// of ours, so it stops here, as swift-nio does.
    public static func close(descriptor: CInt) {
        guard Glibc.close(descriptor) != 0 else { return }
        let failure = Errno.current
        precondition(failure.rawValue != EBADF, "close(\(descriptor)): \(failure): closed twice or never open")
    }

    public static func setNonBlocking(descriptor: CInt, _ on: Bool) throws(SystemError) {
        let flags = try call("fcntl(F_GETFL)") { fcntl(descriptor, F_GETFL) }
        let updated = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        _ = try call("fcntl(F_SETFL)") { fcntl(descriptor, F_SETFL, updated) }
    }

    /// Whether a process with this pid exists (kill with signal 0).
    public static func processExists(pid: pid_t) -> Bool {
        Glibc.kill(pid, 0) == 0 || Errno.current != .noSuchProcess
    }

    /// Raises the soft limit on open descriptors to the hard limit; returns the limit now in force.
    @discardableResult
    public static func raiseDescriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(CInt(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return descriptorLimit() }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(CInt(RLIMIT_NOFILE.rawValue), &limit)
        }
        return descriptorLimit()
    }

    /// The soft limit on open descriptors.
    public static func descriptorLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(CInt(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return Int(min(UInt64(limit.rlim_cur), UInt64(Int32.max)))
    }

    /// Monotonic clock in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Wall clock in milliseconds since the epoch.
    public static func wallClockMilliseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) &* 1000 &+ UInt64(ts.tv_nsec) / 1_000_000
    }
}
