// The ops side of the admin socket: send one request line, read the JSON answer to EOF (bounded).
import BrokerSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum AdminClient {
    public struct Failure: Error, CustomStringConvertible {
        public let message: String
        public init(message: String) { self.message = message }
        public var description: String { message }
    }

    /// The largest answer accepted.
    static let maxAnswer = 16 << 20

    /// Sends `request` and returns the raw answer (one JSON document).
    public static func query(_ request: String, adminSocket path: String) throws(Failure) -> Data {
        let socket: OwnedDescriptor
        do { socket = try Socket.connectUnix(path: path) } catch {
            throw Failure(message: "cannot connect to the admin socket \(path): \(error)")
        }
        let fd = socket.number
        defer { withExtendedLifetime(socket) {} }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let line = Array((request + "\n").utf8)
        guard line.withUnsafeBytes({ Glibc.send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }) == line.count else {
            throw Failure(message: "cannot send to the admin socket \(path): \(Errno.current)")
        }
        var answer = Data()
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Failure(message: "reading the admin socket failed: \(Errno.current)") }
            if n == 0 { break }
            answer.append(contentsOf: chunk[0..<n])
            guard answer.count <= maxAnswer else { throw Failure(message: "admin answer over \(maxAnswer) bytes") }
        }
        return answer
    }

    /// The broker's stats.
    public static func stats(adminSocket path: String) throws(Failure) -> BrokerStats {
        let data = try query("stats", adminSocket: path)
        do { return try JSONDecoder().decode(BrokerStats.self, from: data) } catch {
            let text = String(decoding: data.prefix(500), as: UTF8.self)
            throw Failure(message: "unexpected answer from \(path): \(text)")
        }
    }
}
