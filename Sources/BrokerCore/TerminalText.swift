// Text from outside the broker (client, group and channel names, a peer's or a client's ERROR reason) on its
// way to a log line or a terminal: nothing in it may break or forge a line, or drive the terminal.

public enum TerminalText {
    /// `text` with a backslash doubled and every character that could break or forge a line, or drive a
    /// terminal, written as an escape: `\n`, `\r`, `\t`, and `\u{XX}` for other control characters (C0, DEL, C1),
    /// line and paragraph separators and the bidirectional overrides. Everything else is kept as it is.
    /// In quotes, a quote is escaped too (`\"`).
    public static func escaped(_ text: String, inQuotes: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { needsEscape($0) || (inQuotes && $0 == "\"") }) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\\": out += "\\\\"
            case "\"" where inQuotes: out += "\\\""
            case _ where needsEscape(scalar): out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value == 0x5C || isControl(scalar)
    }

    /// What a terminal could act on: C0, DEL, C1, the line and paragraph separators, bidirectional overrides.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }
}
