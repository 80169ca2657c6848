// A listening socket on the event loop: the peer TCP port, the local client socket, the admin socket or the
// metrics port.
#if canImport(Glibc)
import Glibc
#endif
import BrokerSystem

final class Listener: LoopHandler {
    enum Kind { case peers, clients, admin, metrics }

    let socket: OwnedDescriptor
    var descriptor: CInt { socket.number }
    let kind: Kind
    /// The broker outlives every connection it serves.
    unowned let broker: Broker
    var token: UInt64 = 0
    /// Out of descriptors or memory: the listener is not polled until then (0: it is polled).
    private(set) var pausedUntil: UInt64 = 0
    private var backoffMilliseconds = 0
    private var nextWarningAt: UInt64 = 0
    private var suppressedWarnings = 0

    static let minimumBackoff = 100
    static let maximumBackoff = 1000

    init(_ socket: OwnedDescriptor, kind: Kind, broker: Broker) throws(SystemError) {
        self.socket = socket
        self.kind = kind
        self.broker = broker
        token = try broker.loop.register(socket.number, .readable, self)
    }

    func handleEvents(_ events: EpollEvents) {
        // Clients never take the descriptor the reserve needs: a descriptor freed by a closing connection goes
        // back to the reserve first, so the admin and peer listeners can always accept one more.
        if kind == .clients && !broker.holdReserveDescriptor() {
            broker.acceptFailures += 1
            pause(SystemError("open(reserve descriptor)", .current))
            return
        }
        // A bounded batch per wake-up keeps one busy listener from starving the other sockets.
        for _ in 0..<64 {
            let accepted: OwnedDescriptor?
            do { accepted = try acceptUsingReserve() } catch {
                broker.acceptFailures += 1
                if Self.isPerConnection(error.errno) { continue }
                pause(error)
                return
            }
            guard let connection = accepted else { return }
            backoffMilliseconds = 0
            broker.accepted(connection, on: kind)
        }
    }

    /// Out of descriptors, the admin and peer listeners take the broker's reserve descriptor: operators can
    /// still ask for stats, and peer links come back, while clients have used up the rest.
    private func acceptUsingReserve() throws(SystemError) -> OwnedDescriptor? {
        do { return try Socket.accept(descriptor) } catch {
            guard kind == .admin || kind == .peers, error.errno.rawValue == EMFILE, broker.releaseReserveDescriptor() else { throw error }
            return try Socket.accept(descriptor)
        }
    }

    /// Errors of one pending connection (it is gone); the next one may be accepted at once.
    static func isPerConnection(_ errno: Errno) -> Bool {
        [ECONNABORTED, EPROTO, EPERM].contains(errno.rawValue)
    }

    /// Stops polling for a growing while (100 ms doubling to 1 s): a level-triggered listener that cannot
    /// accept (EMFILE, ENFILE, ENOBUFS, ENOMEM) would otherwise spin the loop and flood the log.
    private func pause(_ error: SystemError) {
        backoffMilliseconds = backoffMilliseconds == 0
            ? Self.minimumBackoff : min(backoffMilliseconds * 2, Self.maximumBackoff)
        let now = Posix.monotonicNanoseconds()
        pausedUntil = now + UInt64(backoffMilliseconds) * 1_000_000
        broker.loop.modify(descriptor, token: token, [])
        guard now >= nextWarningAt else {
            suppressedWarnings += 1
            return
        }
        broker.logger.warning("accept failed: not accepting for a while", [
            "listener": "\(kind)", "reason": "\(error)", "pause_ms": "\(backoffMilliseconds)",
            "suppressed": "\(suppressedWarnings)",
        ])
        suppressedWarnings = 0
        nextWarningAt = now + UInt64(Self.maximumBackoff) * 1_000_000
    }

    /// Polls the listener again once its pause is over (called on the broker's tick).
    func resumeIfDue(now: UInt64) {
        guard pausedUntil != 0, now >= pausedUntil else { return }
        pausedUntil = 0
        broker.loop.modify(descriptor, token: token, .readable)
    }

    func close() {
        broker.loop.deregister(descriptor, token: token)
        socket.close()
    }
}

/// Prepares a Unix socket path: creates its directory, replaces a stale socket file, refuses a live one.
enum SocketPath {
    struct InUse: Error, CustomStringConvertible {
        let path: String
        let why: String
        var description: String { "\(path): \(why)" }
    }

    static func prepare(_ path: String) throws {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if !directory.isEmpty { try makeDirectories(directory) }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw InUse(path: path, why: "exists and is not a socket; remove it or choose another path")
        }
        if (try? Socket.connectUnix(path: path)) != nil {
            throw InUse(path: path, why: "another broker is listening on this socket")
        }
        guard unlink(path) == 0 || Errno.current == .noSuchFile else {
            throw InUse(path: path, why: "cannot remove the stale socket: \(Errno.current)")
        }
    }

    static func makeDirectories(_ directory: String) throws {
        var built = directory.hasPrefix("/") ? "" : "."
        for part in directory.split(separator: "/") {
            built += "/" + part
            if mkdir(built, 0o750) != 0 && Errno.current.rawValue != EEXIST {
                throw InUse(path: built, why: "cannot create directory: \(Errno.current)")
            }
        }
    }
}
