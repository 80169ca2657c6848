// Log lines: text from outside (names, a peer's reasons) cannot break or forge a line, or reach the terminal
// as control bytes.
@testable import BrokerCore
import Testing

@Suite struct LoggerTests {
    @Test func metadataIsQuotedWhenItHoldsSpacesAndPlainOtherwise() {
        let line = Logger.line(timestamp: "T", .info, label: "repbrokerd", "client registered",
                               ["client.id": "7", "client.name": "writer 1", "empty": "", "eq": "a=b"])
        #expect(line == "T info repbrokerd: client registered client.id=7 client.name=\"writer 1\" empty=\"\" eq=\"a=b\"\n")
    }

    @Test(arguments: [
        ("evil\n2026-12-04T00:00:00.000Z error repbrokerd: forged", "evil\\n2026-12-04T00:00:00.000Z error repbrokerd: forged"),
        ("bell\u{07}esc\u{1B}[2Jdel\u{7F}", "bell\\u{7}esc\\u{1B}[2Jdel\\u{7F}"),
        ("cr\rtab\tnul\u{0}", "cr\\rtab\\tnul\\u{0}"),
        ("c1\u{9B}31m", "c1\\u{9B}31m"),
        ("sep\u{2028}bidi\u{202E}", "sep\\u{2028}bidi\\u{202E}"),
        ("back\\slash", "back\\\\slash"),
        ("plain-ütf8", "plain-ütf8"),
    ])
    func controlCharactersAreEscapedInValuesAndMessages(raw: String, escaped: String) {
        let line = Logger.line(timestamp: "T", .warning, label: "l", "m \(raw)", ["k": raw])
        #expect(line.filter { $0 == "\n" } == "\n", "exactly one line")
        #expect(!line.unicodeScalars.dropLast().contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
        #expect(line.hasPrefix("T warning l: m \(escaped) k="))
        #expect(line.contains("k=\(escaped)\n") || line.contains("k=\"\(escaped)\"\n"))
    }

    @Test func aQuoteInAQuotedValueIsEscaped() {
        let line = Logger.line(timestamp: "T", .info, label: "l", "m", ["reason": "say \"hi\" k=v"])
        #expect(line == "T info l: m reason=\"say \\\"hi\\\" k=v\"\n")
    }

    @Test func statsTableCellsAreEscaped() {
        #expect(render([["name"], ["a\nb\u{1B}"]]) == "name\na\\nb\\u{1B}\n")
    }
}
