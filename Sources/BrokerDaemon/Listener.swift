// A listening socket on the event loop: the peer TCP port, the local client socket or the admin socket.
#if canImport(Glibc)
import Glibc
#endif
import BrokerSystem

final class Listener: LoopHandler {
    enum Kind { case peers, clients, admin }

    let descriptor: CInt
    let kind: Kind
    /// The broker outlives every connection it serves.
    unowned(unsafe) let broker: Broker
    var token: UInt64 = 0

    init(descriptor: CInt, kind: Kind, broker: Broker) throws(SystemError) {
        self.descriptor = descriptor
        self.kind = kind
        self.broker = broker
        token = try broker.loop.register(descriptor, .readable, self)
    }

    func handleEvents(_ events: EpollEvents) {
        // A bounded batch per wake-up keeps one busy listener from starving the other sockets.
        for _ in 0..<64 {
            let accepted: CInt?
            do { accepted = try Socket.accept(descriptor) } catch {
                broker.logger.warning("accept failed: \(error)")
                return
            }
            guard let fd = accepted else { return }
            broker.accepted(fd, on: kind)
        }
    }

    func close() {
        broker.loop.deregister(descriptor, token: token)
        Posix.close(descriptor: descriptor)
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
        if let fd = try? Socket.connectUnix(path: path) {
            Posix.close(descriptor: fd)
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
