// TCP endpoint addresses: parsed from HOST:PORT (or [V6]:PORT). A numeric address parses without a lookup;
// a host name is resolved with getaddrinfo, which may block: the broker calls it off its event loop
// (PeerResolver) and at start only.
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

    /// Parses a numeric HOST:PORT without a name lookup; nil when the host is a name. Numeric means what
    /// inet_pton takes (four decimal octets, or IPv6 text), as the core's HostPort reads it: the older forms
    /// getaddrinfo also takes ("1.2.3", "0", hex) are left to resolution, where a wildcard answer is refused.
    public init?(numeric text: String) {
        guard let (host, port) = try? Self.split(text) else { return nil }
        var scratch = in6_addr()
        guard inet_pton(AF_INET, host, &scratch) == 1 || inet_pton(AF_INET6, host, &scratch) == 1 else { return nil }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        }
        self.storage = storage
        self.length = first.pointee.ai_addrlen
        self.text = text
    }

    /// The address a socket is bound to (getsockname), with `port` in place of its own.
    public static func local(of fd: CInt, port: UInt16) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return nil }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let named = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
            }
        }
        guard named == 0 else { return nil }
        let text = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return SocketAddress(numeric: storage.ss_family == sa_family_t(AF_INET6) ? "[\(text)]:\(port)" : "\(text):\(port)")
    }

    /// The unspecified address (0.0.0.0, :: or its IPv4-mapped form): good to listen on, never to dial or to tell other sites.
    public var isWildcard: Bool {
        withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET: return raw[4..<8].allSatisfy { $0 == 0 }
            case AF_INET6:
                // :: or ::ffff:0.0.0.0 (IPv4-mapped), which a connect takes for the same.
                return raw[8..<24].allSatisfy { $0 == 0 }
                    || (raw[8..<18].allSatisfy { $0 == 0 } && raw[18] == 0xFF && raw[19] == 0xFF && raw[20..<24].allSatisfy { $0 == 0 })
            default: return false
            }
        }
    }

    /// 127.0.0.0/8 or ::1 (an IPv4-mapped loopback too).
    public var isLoopback: Bool {
        withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET: return raw[4] == 127
            case AF_INET6:
                if raw[8..<23].allSatisfy({ $0 == 0 }) && raw[23] == 1 { return true }
                return raw[8..<18].allSatisfy { $0 == 0 } && raw[18] == 0xFF && raw[19] == 0xFF && raw[20] == 127
            default: return false
            }
        }
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
