// systemd's readiness protocol (sd_notify(3)) without libsystemd: datagrams of "KEY=value" lines to the
// socket named by NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). READY=1 once the broker's
// sockets listen, STATUS= when the peers up or the clients change, WATCHDOG=1 from the loop's timers (so a
// stuck loop stops sending and systemd restarts the service), STOPPING=1 when a stop begins. Without
// NOTIFY_SOCKET every call does nothing.
#if canImport(Glibc)
import Glibc
#endif
import BrokerCore
import BrokerSystem

final class SystemdNotifier {
    private var descriptor: OwnedDescriptor?
    private var address = sockaddr_un()
    private var addressLength: socklen_t = 0
    /// Half the watchdog period systemd asks for (WATCHDOG_USEC); nil: no watchdog.
    let watchdogIntervalNanoseconds: UInt64?
    private var nextWatchdogAt: UInt64 = 0
    private var lastStatus: (peersUp: Int, peersKnown: Int, clients: Int)?
    private let logger: Logger
    private var failureLogged = false

    /// Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from `environment`.
    init(environment: [String: String], pid: Int32 = getpid(), logger: Logger) {
        self.logger = logger
        let watchdogMicroseconds = environment["WATCHDOG_USEC"].flatMap(UInt64.init) ?? 0
        let watchdogPID = environment["WATCHDOG_PID"].flatMap(Int32.init)
        watchdogIntervalNanoseconds = watchdogMicroseconds > 0 && (watchdogPID == nil || watchdogPID == pid)
            ? watchdogMicroseconds * 1000 / 2 : nil
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        guard bytes.first == UInt8(ascii: "/") || bytes.first == 0, bytes.count < Socket.maxUnixPathBytes else {
            logger.warning("NOTIFY_SOCKET is not a socket path or an abstract name: systemd is not told", [
                "notify_socket": path])
            return
        }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        addressLength = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + bytes.count)
        let number = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard number >= 0 else {
            logger.warning("cannot make the socket for systemd's notifications", ["errno": "\(Errno.current)"])
            return
        }
        descriptor = OwnedDescriptor(adopting: number)
    }

    var isActive: Bool { descriptor != nil }

    /// The variables systemd sets, from this process's environment.
    static func processEnvironment() -> [String: String] {
        var environment: [String: String] = [:]
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        return environment
    }

    /// The sockets listen: READY=1 with a first STATUS.
    func ready(peersUp: Int, peersKnown: Int, clients: Int, now: UInt64) {
        lastStatus = (peersUp, peersKnown, clients)
        send("READY=1\nSTATUS=\(Self.status(peersUp: peersUp, peersKnown: peersKnown, clients: clients))\nMAINPID=\(getpid())")
        nextWatchdogAt = now
        tick(peersUp: peersUp, peersKnown: peersKnown, clients: clients, now: now)
    }

    /// From the loop's timers: WATCHDOG=1 when due, STATUS= when the figures changed.
    func tick(peersUp: Int, peersKnown: Int, clients: Int, now: UInt64) {
        guard descriptor != nil else { return }
        if let interval = watchdogIntervalNanoseconds, now >= nextWatchdogAt {
            send("WATCHDOG=1")
            nextWatchdogAt = now + interval
        }
        if let last = lastStatus, last != (peersUp, peersKnown, clients) {
            lastStatus = (peersUp, peersKnown, clients)
            send("STATUS=" + Self.status(peersUp: peersUp, peersKnown: peersKnown, clients: clients))
        }
    }

    func stopping() { send("STOPPING=1\nSTATUS=stopping: flushing peer queues") }

    static func status(peersUp: Int, peersKnown: Int, clients: Int) -> String {
        "peers up \(peersUp) of \(peersKnown), clients \(clients)"
    }

    private func send(_ message: String) {
        guard let descriptor else { return }
        let sent = message.utf8CString.withUnsafeBufferPointer { text in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.sendto(descriptor.number, text.baseAddress, text.count - 1, Int32(MSG_DONTWAIT | MSG_NOSIGNAL),
                                 $0, addressLength)
                }
            }
        }
        if sent < 0 && !failureLogged {
            failureLogged = true
            logger.warning("cannot notify systemd (logged once)", ["errno": "\(Errno.current)"])
        }
    }
}
