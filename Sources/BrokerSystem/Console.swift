// Whole-line writes to standard output and standard error by descriptor (no shared C FILE state).
#if canImport(Glibc)
import Glibc
#endif

public enum Console {
    public static func writeError(_ text: String) { write(text, to: 2) }
    public static func writeOutput(_ text: String) { write(text, to: 1) }

    static func write(_ text: String, to fd: CInt) {
        let bytes = Array(text.utf8)
        var offset = 0
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            while offset < raw.count {
                let n = Glibc.write(fd, base + offset, raw.count - offset)
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
    }
}
