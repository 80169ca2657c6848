// The direct mesh the broker is measured against (the FAQ's "straightforward solution"): every sending
// process holds its own TCP connection to every other site's receiver and writes each message with one
// system call, in the same MESSAGE framing the broker uses.
import BrokerSystem
import BrokerWire
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class DirectConnection {
    let socket: OwnedDescriptor
    var fd: CInt { socket.number }
    let output = ByteBuffer(capacity: 64 << 10)
    let input = ByteBuffer(capacity: 64 << 10)

    /// Connects to 127.0.0.1:`port`, retrying for up to 10 s while the receiver starts.
    init(port: UInt16) throws {
        let address = try SocketAddress("127.0.0.1:\(port)")
        let deadline = Posix.monotonicNanoseconds() + 10_000_000_000
        while true {
            do {
                socket = try Socket.connectTCPBlocking(address)
                return
            } catch {
                guard Posix.monotonicNanoseconds() < deadline else { throw error }
                usleep(20_000)
            }
        }
    }

    func send(_ header: MessageHeader, rec: UnsafeRawBufferPointer) throws {
        output.reset()
        header.append(control: UnsafeRawBufferPointer(start: nil, count: 0), rec: rec, to: output)
        var remaining = output.readable
        while !remaining.isEmpty {
            let n = Glibc.send(fd, remaining.baseAddress, remaining.count, CInt(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError("send", .current)
            }
            remaining = UnsafeRawBufferPointer(rebasing: remaining[n...])
        }
    }

    /// Reads until a MESSAGE with this LSN offset arrives; false after `timeout` seconds.
    func awaitMessage(lsnOffset: UInt32, timeout: Double) throws -> Bool {
        var interval = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        while true {
            while let frame = try FrameParser.next(in: input.readable, maxMessage: 1 << 20) {
                defer { input.consume(frame.totalSize) }
                if frame.type == .message, try MessageHeader(body: frame.body).lsn.offset == lsnOffset { return true }
            }
            input.reserve(4096)
            let n = Glibc.read(fd, input.writable.baseAddress, input.writable.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            input.commit(n)
        }
    }

    func close() { socket.close() }
}

enum DirectListener {
    typealias Reply = (MessageHeader, UnsafeRawBufferPointer) -> Void

    /// A blocking listener on 127.0.0.1:`port`; prints `ready` once it listens.
    static func listen(port: UInt16) throws -> OwnedDescriptor {
        let listener = try Socket.listenTCP(SocketAddress("127.0.0.1:\(port)"))
        try Posix.setNonBlocking(descriptor: listener.number, false)
        Console.writeOutput("ready\n")
        return listener
    }

    /// Accepts connections and hands every frame to `handler` on the connection's own thread (a naive
    /// receiver: one thread per connection). Never returns.
    static func serve(_ listener: OwnedDescriptor, _ handler: @escaping @Sendable (Frame, Reply) -> Void) -> Never {
        while true {
            let accepted = Glibc.accept(listener.number, nil, nil)
            guard accepted >= 0 else { continue }
            let connection = OwnedDescriptor(adopting: accepted)
            let fd = connection.number
            Socket.setNoDelay(fd)
            startThread {
                let input = ByteBuffer(capacity: 256 << 10)
                let output = ByteBuffer(capacity: 4096)
                let reply: Reply = { header, rec in
                    output.reset()
                    header.append(control: UnsafeRawBufferPointer(start: nil, count: 0), rec: rec, to: output)
                    _ = Glibc.send(fd, output.readable.baseAddress, output.readableBytes, CInt(MSG_NOSIGNAL))
                }
                while true {
                    input.reserve(64 << 10)
                    let n = Glibc.read(fd, input.writable.baseAddress, input.writable.count)
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { break }
                    input.commit(n)
                    while let frame = try? FrameParser.next(in: input.readable, maxMessage: 1 << 20) {
                        handler(frame, reply)
                        input.consume(frame.totalSize)
                    }
                }
                connection.close()
            }
        }
    }
}
