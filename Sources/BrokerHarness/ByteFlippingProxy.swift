// A TCP proxy for tests: forwards every connection made to its port to an upstream address, both ways, and
// on request flips one byte of what it forwards downstream-to-upstream (a man in the middle corrupting the
// stream). It stops and closes every connection when the test stops it.
#if canImport(Glibc)
import Glibc
#endif
import BrokerSystem
import Synchronization

public final class ByteFlippingProxy: @unchecked Sendable {
    public let port: UInt16
    private let upstream: SocketAddress
    private let listener: OwnedDescriptor
    private let stopped = Atomic<Bool>(false)
    private let flipsAsked = Atomic<Int>(0)
    private let flipsDone = Atomic<Int>(0)
    private let accepted = Atomic<Int>(0)
    private let open = Mutex<[CInt]>([])

    /// Listens on a free loopback port and forwards to `upstream` (HOST:PORT).
    public init(upstream: String) throws {
        self.upstream = try SocketAddress(upstream)
        listener = try Socket.listenTCP(SocketAddress("127.0.0.1:0"))
        port = Socket.localPort(listener.number) ?? 0
        startThread { [self] in acceptLoop() }
    }

    /// Connections accepted so far.
    public var connections: Int { accepted.load(ordering: .acquiring) }
    /// Bytes flipped so far.
    public var flipped: Int { flipsDone.load(ordering: .acquiring) }

    /// Flips one byte (XOR 0x5A) in the next chunk forwarded from a client to the upstream.
    public func flipNextByte() { flipsAsked.add(1, ordering: .releasing) }

    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        open.withLock { descriptors in for fd in descriptors { shutdown(fd, CInt(SHUT_RDWR)) } }
    }

    deinit { stop() }

    private func acceptLoop() {
        while !stopped.load(ordering: .acquiring) {
            var poller = pollfd(fd: listener.number, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0, let client = try? Socket.accept(listener.number) else { continue }
            guard let server = try? Socket.connectTCPBlocking(upstream) else { continue }
            accepted.add(1, ordering: .releasing)
            let flags = fcntl(client.number, F_GETFL)
            _ = fcntl(client.number, F_SETFL, flags & ~O_NONBLOCK)
            Socket.setNoDelay(client.number)
            open.withLock { $0 += [client.number, server.number] }
            let pair = Pair(client: client, server: server)
            startThread { [self] in pump(from: pair.client.number, to: pair.server.number, flipping: true, pair) }
            startThread { [self] in pump(from: pair.server.number, to: pair.client.number, flipping: false, pair) }
        }
        listener.close()
    }

    /// Both ends of one proxied connection, closed when the second pump is done with them.
    private final class Pair: @unchecked Sendable {
        let client: OwnedDescriptor
        let server: OwnedDescriptor
        let pumps = Atomic<Int>(2)
        init(client: OwnedDescriptor, server: OwnedDescriptor) {
            self.client = client
            self.server = server
        }
    }

    private func pump(from source: CInt, to destination: CInt, flipping: Bool, _ pair: Pair) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        loop: while !stopped.load(ordering: .acquiring) {
            let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            if flipping, flipsAsked.load(ordering: .acquiring) > flipsDone.load(ordering: .acquiring) {
                buffer[count / 2] ^= 0x5A
                flipsDone.add(1, ordering: .releasing)
            }
            var sent = 0
            while sent < count {
                // MSG_NOSIGNAL: a peer that went away is an error here, not a SIGPIPE for the whole test process.
                let wrote = buffer.withUnsafeBytes { send(destination, $0.baseAddress! + sent, count - sent, CInt(MSG_NOSIGNAL)) }
                if wrote < 0 && errno == EINTR { continue }
                guard wrote > 0 else { break loop }
                sent += wrote
            }
        }
        // One end done: the other pump sees the end too.
        shutdown(source, CInt(SHUT_RDWR))
        shutdown(destination, CInt(SHUT_RDWR))
        if pair.pumps.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            open.withLock { $0.removeAll { $0 == pair.client.number || $0 == pair.server.number } }
            pair.client.close()
            pair.server.close()
        }
    }
}
