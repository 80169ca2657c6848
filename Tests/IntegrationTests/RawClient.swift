// A client written straight from PROTOCOL.md on a non-blocking socket, for tests that must see what the client
// libraries hide: a SEND_RESULT for a message that asks for one whatever its flags, and how much the broker
// takes before it stops reading.
import BrokerSystem
import BrokerWire
#if canImport(Glibc)
import Glibc
#endif

final class RawClient {
    let socket: OwnedDescriptor
    var fd: CInt { socket.number }
    private(set) var welcome: WelcomeFrame?
    private let input = ByteBuffer(capacity: 64 << 10)
    /// Bytes queued by `send` and not yet taken by the socket.
    private var output: [UInt8] = []
    private var outputOffset = 0
    /// SEND_RESULT statuses by sequence, as they came.
    private(set) var results: [UInt64: SendStatus] = [:]
    private(set) var errors: [ErrorFrame] = []

    /// Connects, registers (asking for rings of `ringBytes` when not 0: the descriptors that come with WELCOME are
    /// not taken, so the client stays on the socket) and waits for WELCOME.
    init(socketPath: String, group: String = "default", name: String = "raw", roles: ClientRoles = .sender,
         ringBytes: UInt32 = 0) throws {
        socket = try Socket.connectUnix(path: socketPath)
        try Posix.setNonBlocking(descriptor: socket.number, true)
        let register = RegisterFrame(roles: roles, pid: getpid(), group: group, name: name, ringBytes: ringBytes)
        output = FrameParser.encode(.register, body: register.body)
        let deadline = Posix.monotonicNanoseconds() + 10_000_000_000
        while welcome == nil {
            guard Posix.monotonicNanoseconds() < deadline else {
                close()
                throw HarnessFailure("no WELCOME in 10 s")
            }
            _ = flush()
            welcome = try readFrames(waitMilliseconds: 50) { frame -> WelcomeFrame? in
                frame.type == .welcome ? try WelcomeFrame(body: frame.body) : nil
            }
            if let error = errors.first {
                close()
                throw HarnessFailure("refused: \(error)")
            }
        }
    }

    /// Queues a MESSAGE asking for a SEND_RESULT with `sequence`, and writes what the socket takes now.
    func send(sequence: UInt64, to destination: Int32, rec: [UInt8], flags: RepFlags = [], lsn: LSN = .zero) {
        let header = MessageHeader(destination: destination, flags: flags, lsn: lsn, controlLength: 0,
                                   recLength: UInt32(rec.count), sequence: sequence)
        let buffer = ByteBuffer(capacity: header.frameSize)
        rec.withUnsafeBytes { header.append(payload: $0, to: buffer) }
        output += Array(buffer.readable)
        _ = flush()
    }

    /// Writes queued bytes until the socket takes no more; true when everything is written.
    @discardableResult
    func flush() -> Bool {
        while outputOffset < output.count {
            let n = output.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + outputOffset, $0.count - outputOffset, CInt(MSG_NOSIGNAL)) }
            guard n > 0 else { break }
            outputOffset += n
        }
        if outputOffset == output.count {
            output.removeAll(keepingCapacity: true)
            outputOffset = 0
            return true
        }
        return false
    }

    /// Bytes queued that the broker has not read yet (it stopped reading, or the kernel's buffer is full).
    var unwrittenBytes: Int { output.count - outputOffset }

    /// Reads what has come within `waitMilliseconds`, keeping SEND_RESULT and ERROR frames.
    func pump(waitMilliseconds: Int32 = 0) throws {
        _ = try readFrames(waitMilliseconds: waitMilliseconds) { _ -> Bool? in nil }
    }

    /// Reads and handles frames for up to `waitMilliseconds`: SEND_RESULT and ERROR are kept; `take` may pick
    /// a frame out (the first non-nil result is returned).
    func readFrames<T>(waitMilliseconds: Int32, take: (Frame) throws -> T?) throws -> T? {
        var pollfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        _ = poll(&pollfd, 1, waitMilliseconds)
        while true {
            input.reserve(64 << 10)
            let n = input.writable.withMemoryRebound(to: UInt8.self) { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            input.commit(n)
        }
        var taken: T?
        while let frame = try FrameParser.next(in: input.readable, maxMessage: 64 << 20) {
            switch frame.type {
            case .sendResult:
                let result = try SendResultFrame(body: frame.body)
                results[result.sequence] = result.status
            case .error:
                errors.append(try ErrorFrame(body: frame.body))
            default:
                if taken == nil { taken = try take(frame) }
            }
            input.consume(frame.totalSize)
        }
        return taken
    }

    func close() { socket.close() }
}

struct HarnessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
