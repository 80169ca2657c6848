// The daemon's log sink: each line stamped with the wall clock (UTC, milliseconds), as text or JSON
// (--log-format), and written to stderr in one write, so lines from concurrent writers do not interleave.
#if canImport(Glibc)
import Glibc
#endif
import BrokerSystem

public struct StandardErrorSink: LogSink {
    public let format: LogFormat

    public init(format: LogFormat = .text) {
        self.format = format
    }

    public func write(_ level: LogLevel, label: String, _ message: String, _ metadata: Logger.Metadata) {
        switch format {
        case .text: Console.writeError(Logger.line(timestamp: Self.timestamp(), level, label: label, message, metadata))
        case .json: Console.writeError(Logger.jsonLine(timestamp: Self.timestamp(), level, label: label, message, metadata))
        }
    }

    /// UTC time as 2026-01-02T03:04:05.678Z.
    static func timestamp() -> String {
        let ms = Posix.wallClockMilliseconds()
        var seconds = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(parts.tm_year + 1900)-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(ms % 1000), 3))Z"
    }
}

extension Logger {
    /// A logger writing to stderr.
    public init(label: String, level: LogLevel = .info, format: LogFormat = .text) {
        self.init(label: label, level: level, sink: StandardErrorSink(format: format))
    }
}
