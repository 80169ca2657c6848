// JSON string literals for text from outside (log lines): quotes and backslashes escaped, and every
// character a terminal could act on (TerminalText.isControl: C0, DEL, C1, line separators, bidirectional
// overrides) as a \u escape, so the result is one line that no terminal interprets.

public enum JSONText {
    /// Appends `text` as a quoted JSON string.
    public static func appendQuoted(_ text: String, to output: inout String) {
        output.unicodeScalars.append("\"")
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            default:
                if TerminalText.isControl(scalar) {
                    output += "\\u"
                    let hex = String(scalar.value, radix: 16)
                    output += String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        output.unicodeScalars.append("\"")
    }

    /// `text` as a quoted JSON string.
    public static func quoted(_ text: String) -> String {
        var output = ""
        appendQuoted(text, to: &output)
        return output
    }
}
