// repbroker top: a live view of one broker, redrawn every --interval seconds with ANSI escapes (no curses).
// On a terminal it takes the screen (alternate buffer, cursor hidden), reads keys without echo, and `q` (or
// Ctrl-C) quits and gives the terminal back as it was. When stdout is not a terminal it prints each view as
// plain lines, separated by a blank line, --count times (or until interrupted).
import BrokerDaemon
import BrokerSystem
#if canImport(Glibc)
import Glibc
#endif

enum TopCommand: Command {
    static let help = """
        USAGE: repbroker top [--admin-socket PATH] [--interval SECONDS] [--count N]

        A live view of the broker, refreshed every second: per peer its state, heartbeat round trip (p50 over
        the last minute), bytes queued and messages per second each way; per group messages delivered per
        second, PERMANENT sends waiting for acks and their ack wait p99; per client messages per second each
        way and its rings' fill. Press q to quit. Without a terminal on stdout, prints each view as plain text.

        OPTIONS:
          --admin-socket PATH  The broker's admin socket (default: \(BrokerConfig.defaultAdminSocketPath)).
          --interval SECONDS   Time between views (default 1).
          --count N            Stop after N views (default: until q or interrupted).
        """
    static let valuedOptions: Set<String> = ["admin-socket", "interval", "count"]
    static let flagNames: Set<String> = []

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let path = arguments.last("admin-socket") ?? BrokerConfig.defaultAdminSocketPath
        let interval = try arguments.seconds("interval") ?? 1
        guard interval > 0 else { throw UsageError("--interval needs a positive number of seconds") }
        let count = try arguments.integer("count", Int.self, range: 1...Int.max)
        let terminal = isatty(STDOUT_FILENO) == 1
        let keys = terminal && isatty(STDIN_FILENO) == 1 ? RawKeyboard() : nil
        if terminal { Console.writeOutput("\u{1B}[?1049h\u{1B}[?25l") }
        defer {
            keys?.restore()
            if terminal { Console.writeOutput("\u{1B}[?25h\u{1B}[?1049l") }
        }
        var previous: BrokerStats?
        var previousAt = 0.0
        var shown = 0
        while count.map({ shown < $0 }) ?? true {
            let stats = try AdminClient.stats(adminSocket: path)
            let now = Double(Posix.monotonicNanoseconds()) / 1e9
            let lines = stats.topLines(previous: previous, seconds: now - previousAt)
            previous = stats
            previousAt = now
            shown += 1
            if terminal {
                let rows = Int(terminalRows())
                let fitted = rows > 1 ? Array(lines.prefix(rows - 1)) : lines
                Console.writeOutput("\u{1B}[H\u{1B}[2J" + fitted.joined(separator: "\n") + "\n\u{1B}[7m q quits \u{1B}[0m")
            } else {
                Console.writeOutput((shown > 1 ? "\n" : "") + lines.joined(separator: "\n") + "\n")
            }
            if let count, shown >= count { break }
            if let keys {
                if keys.waitForQuit(seconds: interval) { break }
            } else {
                usleep(UInt32(interval * 1e6))
            }
        }
        return 0
    }

    static func terminalRows() -> UInt16 {
        var size = winsize()
        return ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 ? size.ws_row : 24
    }
}

/// stdin in non-canonical mode without echo, for one-key commands; `restore` puts it back.
final class RawKeyboard {
    private var saved = termios()
    private var active = false

    init?() {
        guard tcgetattr(STDIN_FILENO, &saved) == 0 else { return nil }
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        guard tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0 else { return nil }
        active = true
    }

    /// Waits up to `seconds` for a key; true when it was q, Q or Ctrl-C (ISIG stays on, so Ctrl-C also
    /// interrupts; the shell then resets the terminal).
    func waitForQuit(seconds: Double) -> Bool {
        let deadline = Posix.monotonicNanoseconds() + UInt64(seconds * 1e9)
        while true {
            let now = Posix.monotonicNanoseconds()
            guard now < deadline else { return false }
            var descriptor = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32((deadline - now + 999_999) / 1_000_000))
            guard ready > 0 else { continue }
            var byte: UInt8 = 0
            let got = read(STDIN_FILENO, &byte, 1)
            if got == 0 {
                // End of input: no key will come; keep showing until interrupted.
                let left = deadline - min(Posix.monotonicNanoseconds(), deadline)
                usleep(UInt32(left / 1000))
                return false
            }
            if got == 1 && (byte == UInt8(ascii: "q") || byte == UInt8(ascii: "Q") || byte == 3) { return true }
        }
    }

    func restore() {
        guard active else { return }
        active = false
        tcsetattr(STDIN_FILENO, TCSANOW, &saved)
    }

    deinit { restore() }
}
