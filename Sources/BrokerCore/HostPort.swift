// HOST:PORT text, parsed without a name lookup: the host is a numeric IPv4 or IPv6 address (16 bytes,
// IPv4 mapped) or a name. The core decides with this what it may store, spread or dial (never a wildcard); the
// shell resolves names and dials.

public struct HostPort: Equatable, Sendable {
    public let host: String
    public let port: UInt16
    /// The numeric address, when the host is one (an IPv4 address as IPv4-mapped IPv6); nil for a name.
    public let numeric: [UInt8]?

    /// Parses "host:port" or "[v6]:port"; nil when it is not that shape.
    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = UInt16(portText) else {
            return nil
        }
        let numeric = Self.ipv4(host).map { [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + $0 } ?? Self.ipv6(host)
        // A bracketed host is an IPv6 address; any other is an address or a host name (RFC 1123 characters).
        guard numeric != nil || (!text.hasPrefix("[") && Self.isHostName(host)) else { return nil }
        self.host = String(host)
        self.port = port
        self.numeric = numeric
    }

    static func isHostName(_ text: Substring) -> Bool {
        text.utf8.count <= 253 && text.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
        }
    }

    /// The unspecified address (0.0.0.0 or ::): good to listen on, never to dial or to tell other sites.
    public var isWildcard: Bool {
        guard let numeric else { return false }
        return numeric.allSatisfy { $0 == 0 } || (numeric[..<12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]
                                                   && numeric[12...].allSatisfy { $0 == 0 })
    }

    /// 127.0.0.0/8 or ::1 (an IPv4-mapped loopback too).
    public var isLoopback: Bool {
        guard let numeric else { return host == "localhost" }
        if numeric[..<15].allSatisfy({ $0 == 0 }) && numeric[15] == 1 { return true }
        return numeric[..<12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] && numeric[12] == 127
    }

    /// Four decimal octets, without leading zeros (what inet_pton takes).
    static func ipv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII), part.count == 1 || part.first != "0",
                  let value = UInt8(part) else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    /// RFC 4291 text: eight groups of up to four hex digits, one "::" for a run of zero groups, an IPv4 tail.
    static func ipv6(_ text: Substring) -> [UInt8]? {
        guard text.contains(":") else { return nil }
        // Split at "::" (at most one).
        var halves: [String] = []
        var current = ""
        var previous: Character?
        for character in text {
            if character == ":" && previous == ":" {
                current.removeLast()
                halves.append(current)
                current = ""
                previous = nil
                continue
            }
            current.append(character)
            previous = character
        }
        halves.append(current)
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String) -> [UInt16]? {
            guard !part.isEmpty else { return [] }
            var result: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if index == pieces.count - 1, piece.contains("."), let v4 = ipv4(piece) {
                    result.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    result.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                    continue
                }
                guard !piece.isEmpty, piece.count <= 4, let value = UInt16(piece, radix: 16) else { return nil }
                result.append(value)
            }
            return result
        }
        guard let head = groups(halves[0]) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let tail = groups(halves[1]), head.count + tail.count < 8 else { return nil }
            all += [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }
}
