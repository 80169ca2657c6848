// One line per event: time, level, message, dotted metadata, written by a sink (stderr in the daemon), as
// text or as one JSON object (`LogFormat`).
// Disabled levels cost nothing (messages and metadata are autoclosures). Text from outside (client, group and channel names, a peer's or a
// client's ERROR reason) reaches the log through the message and the metadata values, so both are escaped
// here, once for every caller: a line break cannot forge a line, and no control or terminal escape byte
// reaches the terminal.

public enum LogLevel: Int, Comparable, Sendable, CaseIterable, CustomStringConvertible {
    case trace, debug, info, warning, error

    public init?(name: String) {
        guard let level = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = level
    }

    public var description: String {
        switch self {
        case .trace: return "trace"
        case .debug: return "debug"
        case .info: return "info"
        case .warning: return "warning"
        case .error: return "error"
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// How a log line is written: text (`time level label: message key=value ...`) or one JSON object per line
/// with the same fields (`{"time":...,"level":...,"label":...,"message":...,"key":"value",...}`).
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

/// Where log lines go: the daemon's sink stamps them with the wall clock and writes them to stderr; the
/// simulator keeps them in memory. The core itself reads no clock and writes nothing.
public protocol LogSink: Sendable {
    func write(_ level: LogLevel, label: String, _ message: String, _ metadata: Logger.Metadata)
}

/// A logger for one component; libraries take one rather than make one.
public struct Logger: Sendable {
    public var label: String
    public var level: LogLevel
    public var sink: any LogSink

    public init(label: String, level: LogLevel = .info, sink: any LogSink) {
        self.label = label
        self.level = level
        self.sink = sink
    }

    public typealias Metadata = KeyValuePairs<String, String>

    public func log(
        _ level: LogLevel, _ message: @autoclosure () -> String, _ metadata: @autoclosure () -> Metadata = [:]
    ) {
        guard level >= self.level else { return }
        sink.write(level, label: label, message(), metadata())
    }

    /// One log line, newline included: the message and every metadata value escaped (`TerminalText`), a value
    /// quoted when it is empty or holds a space, a quote or an equals sign.
    public static func line(timestamp: String, _ level: LogLevel, label: String, _ message: String, _ metadata: Metadata)
        -> String {
        var line = "\(timestamp) \(level) \(label): \(TerminalText.escaped(message))"
        for (key, value) in metadata {
            let quoted = value.isEmpty || value.unicodeScalars.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" })
            line += " \(key)=" + (quoted ? "\"\(TerminalText.escaped(value, inQuotes: true))\"" : TerminalText.escaped(value))
        }
        return line + "\n"
    }

    /// One log line as a JSON object, newline included: time, level, label, message, then the metadata in
    /// order, every value a string. What a terminal could act on is a \u escape (JSONText), so a line is one
    /// line and no terminal escape gets through; a metadata key that would repeat a field gets a
    /// trailing underscore.
    public static func jsonLine(timestamp: String, _ level: LogLevel, label: String, _ message: String, _ metadata: Metadata)
        -> String {
        var line = "{\"time\":"
        JSONText.appendQuoted(timestamp, to: &line)
        line += ",\"level\":\"\(level)\",\"label\":"
        JSONText.appendQuoted(label, to: &line)
        line += ",\"message\":"
        JSONText.appendQuoted(message, to: &line)
        for (key, value) in metadata {
            line += ","
            JSONText.appendQuoted(["time", "level", "label", "message"].contains(key) ? key + "_" : key, to: &line)
            line += ":"
            JSONText.appendQuoted(value, to: &line)
        }
        return line + "}\n"
    }

    public func trace(_ m: @autoclosure () -> String, _ md: @autoclosure () -> Metadata = [:]) { log(.trace, m(), md()) }
    public func debug(_ m: @autoclosure () -> String, _ md: @autoclosure () -> Metadata = [:]) { log(.debug, m(), md()) }
    public func info(_ m: @autoclosure () -> String, _ md: @autoclosure () -> Metadata = [:]) { log(.info, m(), md()) }
    public func warning(_ m: @autoclosure () -> String, _ md: @autoclosure () -> Metadata = [:]) {
        log(.warning, m(), md())
    }
    public func error(_ m: @autoclosure () -> String, _ md: @autoclosure () -> Metadata = [:]) { log(.error, m(), md()) }
}
