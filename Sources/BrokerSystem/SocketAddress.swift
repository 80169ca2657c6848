// TCP endpoint addresses: parsed from HOST:PORT (or [V6]:PORT) and resolved once, off the event loop.
#if canImport(Glibc)
import Glibc
#endif

/// A resolved IPv4 or IPv6 socket address.
public struct SocketAddress: Sendable, CustomStringConvertible {
    public var storage: sockaddr_storage
    public var length: socklen_t
    /// The text it was parsed from, for logs and stats.
    public let text: String

    public enum ParseError: Error, CustomStringConvertible {
        case malformed(String)
        case unresolved(String, String)
        public var description: String {
            switch self {
            case .malformed(let text): return "'\(text)' is not HOST:PORT"
            case .unresolved(let text, let why): return "cannot resolve '\(text)': \(why)"
            }
        }
    }

    /// Splits "host:port" or "[v6]:port" into host and port.
    public static func split(_ text: String) throws(ParseError) -> (host: String, port: UInt16) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .malformed(text) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .malformed(text) }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .malformed(text) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = UInt16(portText) else { throw .malformed(text) }
        return (String(host), port)
    }

    public init(_ text: String) throws(ParseError) {
        let (host, port) = try Self.split(text)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw .unresolved(text, String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(result) }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr,
                                                        count: Int(first.pointee.ai_addrlen)))
        }
        self.storage = storage
        self.length = first.pointee.ai_addrlen
        self.text = text
    }

    public var family: CInt { CInt(storage.ss_family) }
    public var description: String { text }

    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var copy = storage
        return withUnsafePointer(to: &copy) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}
