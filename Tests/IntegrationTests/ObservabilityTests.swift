// What operators watch, against real brokers: the Prometheus endpoint (--metrics-listen) and `repbroker stats
// --prometheus` checked by promtool, the latency histograms filled by real traffic (heartbeat round trips,
// time queued, PERMANENT ack wait), systemd's notifications to a fake NOTIFY_SOCKET in order (READY, STATUS,
// WATCHDOG only while the loop turns, STOPPING), and JSON logs that parse line by line.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ObservabilityTests {
    @Test func metricsEndpointServesWhatPromtoolAcceptsWithTheLatencyHistogramsFilled() throws {
        let metricsPort = FreePort.next()
        try withSites(2, extraArguments: ["--heartbeat-ms", "50"],
                      siteArguments: { $0 == 1 ? ["--metrics-listen", "127.0.0.1:\(metricsPort)"] : [] }) { sites in
            let receiver = try AckingReceiver(sites.broker(2))
            defer { receiver.close() }
            #expect(sites.broker(1).waitForStats(timeout: 10) { stats in
                stats.peers.first?.rtt.map { $0.count >= 3 } ?? false
            }, "heartbeat probes are echoed and timed")
            // A name with a quote, a backslash and a line break: the label value must be escaped.
            let writer = try sender(sites.broker(1), policy: .quorum, timeout: 5)
            defer { writer.close() }
            let odd = try client(sites.broker(1), name: "we\"ird\\name\nx")
            defer { odd.close() }
            for index in 1...50 {
                try writer.send(control: [1], rec: [UInt8](repeating: 7, count: 100), lsn: LSN(file: 1, offset: UInt32(index * 100)),
                                to: SiteID.broadcast, flags: .permanent)
            }
            #expect(sites.broker(1).waitForStats(timeout: 10) { stats in
                (stats.groups.first { $0.name == "default" }?.ackWait?.count ?? 0) == 50
                    && (stats.peers.first?.timeQueued?.count ?? 0) >= 1
            }, "\(String(describing: try? sites.broker(1).stats().groups))")
            let stats = try sites.broker(1).stats()
            let ackWait = try #require(stats.groups.first { $0.name == "default" }?.ackWait)
            #expect(ackWait.lastMinute.count == 50)
            #expect((ackWait.lastMinute.p50Seconds ?? 0) > 0 && (ackWait.lastMinute.maxSeconds ?? 99) < 5)
            #expect(ackWait.buckets.reduce(0, +) == ackWait.count)
            let rtt = try #require(stats.peers.first?.rtt)
            #expect((rtt.lastMinute.p99Seconds ?? 99) < 1, "loopback round trips: \(rtt.lastMinute)")
            #expect(stats.table.contains("LATENCY"))
            #expect(stats.table.contains("ack_wait"))

            let response = try HTTP.get(port: metricsPort, path: "/metrics")
            #expect(response.status == 200)
            #expect(response.headers.contains("Content-Type: text/plain; version=0.0.4"))
            let body = response.body
            #expect(body.contains("repbroker_peer_up{peer=\"2\"} 1"))
            #expect(body.contains("repbroker_group_ack_wait_seconds_count{group=\"default\"} 50"))
            #expect(body.contains("repbroker_peer_rtt_seconds_bucket{peer=\"2\",le=\"+Inf\"}"))
            #expect(body.contains("client=\"we\\\"ird\\\\name\\nx\""), "escaped label value")
            #expect(body.contains("repbroker_client_sent_messages_total{group=\"default\",client=\"perm-quorum\",transport="))
            try Promtool.check(body)
            let printed = try runToEnd(Executables.path("repbroker"),
                                       ["stats", "--prometheus", "--admin-socket", sites.broker(1).adminSocketPath])
            #expect(printed.contains("repbroker_group_ack_wait_seconds_count{group=\"default\"} 50"))
            try Promtool.check(printed)

            #expect(try HTTP.get(port: metricsPort, path: "/other").status == 404)
            #expect(try HTTP.request(port: metricsPort, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").status == 405)
            #expect(try HTTP.request(port: metricsPort, "nonsense\r\n\r\n").status == 400)
            #expect(try HTTP.request(port: metricsPort, String(repeating: "x", count: 9000)).status == 431)
            // The broker still answers after all that.
            #expect(try HTTP.get(port: metricsPort, path: "/metrics").status == 200)
        }
    }

    @Test func systemdHearsReadyStatusWatchdogWhileTheLoopTurnsAndStoppingInOrder() throws {
        let sites = try LocalSites(count: 2, extraArguments: ["--heartbeat-ms", "100"])
        defer { sites.shutDown() }
        let listener = try NotifyListener(path: sites.directory.path + "/notify.sock")
        let abstract = try NotifyListener(abstractName: "rb-notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        sites.broker(1).environment = ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "200000"]
        sites.broker(2).environment = ["NOTIFY_SOCKET": "@" + abstract.name]
        try sites.start()

        #expect(listener.waitFor(timeout: 10) { $0.contains { $0.contains("STATUS=peers up 1 of 1") } },
                "STATUS follows the peers: \(listener.messages)")
        #expect(listener.waitFor(timeout: 10) { $0.filter { $0 == "WATCHDOG=1" }.count >= 3 }, "\(listener.messages)")
        #expect(abstract.waitFor(timeout: 10) { $0.first?.hasPrefix("READY=1\n") == true }, "abstract socket: \(abstract.messages)")
        #expect(!abstract.messages.contains("WATCHDOG=1"), "no WATCHDOG_USEC, no watchdog")

        // A stopped loop sends no watchdog; it resumes with the loop.
        let pid = try #require(sites.broker(1).child?.pid)
        kill(pid, SIGSTOP)
        // Stopped once no datagram has come for 250 ms (2.5 watchdog periods); then none for 0.6 s more.
        var last = (count: listener.messages.count, at: Posix.monotonicNanoseconds())
        #expect(Deadline.wait(timeout: 5, interval: 0.01) {
            let count = listener.messages.count
            if count != last.count { last = (count, Posix.monotonicNanoseconds()) }
            return Posix.monotonicNanoseconds() - last.at > 250_000_000
        })
        let before = listener.messages.count
        #expect(!Deadline.wait(timeout: 0.6, interval: 0.01) { listener.messages.count != before },
                "nothing while stopped: \(listener.messages.suffix(3))")
        kill(pid, SIGCONT)
        #expect(listener.waitFor(timeout: 5) { $0.count > before && $0[before...].contains("WATCHDOG=1") })

        sites.broker(1).terminate()
        #expect(listener.waitFor(timeout: 5) { $0.contains { $0.hasPrefix("STOPPING=1") } })
        let messages = listener.messages
        let ready = try #require(messages.firstIndex { $0.hasPrefix("READY=1\n") })
        let firstWatchdog = try #require(messages.firstIndex(of: "WATCHDOG=1"))
        let stopping = try #require(messages.firstIndex { $0.hasPrefix("STOPPING=1") })
        #expect(ready == 0 && ready < firstWatchdog && firstWatchdog < stopping, "\(messages)")
        #expect(messages[ready].contains("STATUS=peers up 0 of 1, clients 0"))
        #expect(messages[ready].contains("MAINPID=\(pid)"))
    }

    @Test func jsonLogsAreOneObjectPerLineWithOutsideTextEscaped() throws {
        let name = "evil\n\u{1B}[31mname\"\\"
        try withSites(2, extraArguments: ["--heartbeat-ms", "200", "--log-format", "json", "--log-level", "debug"]) { sites in
            let odd = try client(sites.broker(1), name: name)
            let receiver = try client(sites.broker(2), roles: [.receiver])
            try odd.send(control: [1], rec: [2], to: 2)
            #expect(try receiver.receive(timeout: 10) != nil)
            odd.close()
            receiver.close()
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.clients.isEmpty })
            #expect(sites.broker(1).terminate() == 0)
            let lines = sites.broker(1).log.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(lines.count >= 6, "\(lines)")
            var messages: [String] = []
            for line in lines {
                #expect(!line.contains("\u{1B}"), "no terminal escape reaches the log: \(line)")
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                let fields = try #require(object, "not a JSON object: \(line)")
                for key in ["time", "level", "label", "message"] { #expect(fields[key] is String, "\(key) in \(line)") }
                #expect(["trace", "debug", "info", "warning", "error"].contains(fields["level"] as? String ?? ""))
                messages.append(fields["message"] as? String ?? "")
                if fields["message"] as? String == "client registered" {
                    #expect(fields["client.name"] as? String == name, "the name comes back whole once parsed")
                }
            }
            #expect(messages.contains("broker started"))
            #expect(messages.contains("client registered"))
            #expect(messages.last == "stopped")
        }
    }
}

@Suite struct TopTests {
    @Test func topShowsRatesAsPlainTextWithoutATerminalAndQuitsOnQInOne() throws {
        try withSites(2, extraArguments: ["--heartbeat-ms", "50"]) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver], name: "top-receiver")
            let writer = try client(sites.broker(1), name: "top-writer")
            let stop = StopFlag()
            let finished = Counter()
            startThread {
                while !stop.isSet { _ = try? receiver.receive(timeout: 0.1) }
                finished.increment()
            }
            startThread {
                while !stop.isSet {
                    try? writer.send(control: [1], rec: [2], to: 2)
                    usleep(500)  // a steady rate, not a wait for anything
                }
                finished.increment()
            }
            defer {
                // The clients close once both threads are done with them.
                stop.set()
                _ = Deadline.wait(timeout: 10, interval: 0.01) { finished.value == 2 }
                writer.close()
                receiver.close()
            }
            let admin = sites.broker(1).adminSocketPath
            let plain = try runToEnd(Executables.path("repbroker"), ["top", "--count", "2", "--interval", "0.5",
                                                                    "--admin-socket", admin])
            #expect(!plain.contains("\u{1B}"), "no escapes without a terminal")
            let views = plain.components(separatedBy: "repbroker top  site 1")
            #expect(views.count == 3, "\(plain)")
            let second = views.last ?? ""
            let peerRow = try #require(second.split(separator: "\n").first { $0.hasPrefix("2 ") && $0.contains("connected") },
                                       "\(plain)")
            let columns = peerRow.split(separator: " ", omittingEmptySubsequences: true)
            #expect(columns.count == 8, "\(columns)")
            #expect((Int(columns[4]) ?? 0) > 0, "messages out per second: \(peerRow)")
            #expect(columns[2].hasSuffix("us") || columns[2].hasSuffix("ms"), "the round trip: \(peerRow)")
            #expect(second.contains("top-writer") && second.contains("GROUP"))

            // On a terminal (script gives it one): the alternate screen, redrawn, and q quits.
            let command = "\(Executables.path("repbroker")) top --interval 0.2 --admin-socket \(admin)"
            let top = try ChildProcess(name: "top", executable: "/usr/bin/script", arguments: ["-qfec", command, "/dev/null"])
            #expect(top.waitForLines(timeout: 10) { $0.joined().components(separatedBy: "q quits").count > 2 }, "\(top.lines)")
            top.write("q")
            #expect(top.waitForExit(timeout: 5) == 0, "q quits: \(top.lines.suffix(3))")
            let screen = top.lines.joined(separator: "\n")
            #expect(screen.contains("\u{1B}[?1049h") && screen.contains("\u{1B}[?1049l"), "the screen is given back")
            #expect(screen.contains("top-writer"))
        }
    }
}

/// A datagram socket standing in for systemd's NOTIFY_SOCKET: a thread keeps every message received.
final class NotifyListener: @unchecked Sendable {
    let path: String
    let name: String
    private let descriptor: OwnedDescriptor
    private let lock = ConditionLock()
    private var received: [String] = []
    private let stop = StopFlag()

    convenience init(path: String) throws { try self.init(bytes: Array(path.utf8), path: path, name: "") }
    convenience init(abstractName: String) throws { try self.init(bytes: [0] + Array(abstractName.utf8), path: "", name: abstractName) }

    private init(bytes: [UInt8], path: String, name: String) throws {
        self.path = path
        self.name = name
        let number = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard number >= 0 else { throw HarnessError("socket: \(Errno.current)") }
        descriptor = OwnedDescriptor(adopting: number)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + bytes.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(number, $0, length) }
        }
        guard bound == 0 else { throw HarnessError("bind: \(Errno.current)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(number, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        startThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !stop.isSet {
                let count = buffer.withUnsafeMutableBytes { recv(number, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { continue }
                let message = String(decoding: buffer[..<count], as: UTF8.self)
                lock.withLock {
                    received.append(message)
                    lock.broadcast()
                }
            }
        }
    }

    deinit { stop.set() }

    var messages: [String] { lock.withLock { received } }

    func waitFor(timeout: Double, _ condition: ([String]) -> Bool) -> Bool {
        Deadline.wait(timeout: timeout, interval: 0.01) { condition(messages) }
    }
}

/// A blocking HTTP/1.1 exchange over loopback, for the metrics port.
enum HTTP {
    struct Response {
        var status: Int
        var headers: String
        var body: String
    }

    static func get(port: UInt16, path: String) throws -> Response {
        try request(port: port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    }

    static func request(port: UInt16, _ text: String) throws -> Response {
        let socket = try Socket.connectTCPBlocking(SocketAddress("127.0.0.1:\(port)"))
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket.number, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc.send(socket.number, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { break }  // the server may answer and close before reading it all
            written += count
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(socket.number, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[..<count]
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw HarnessError("no HTTP response: \(text.prefix(200))") }
        let head = String(text[..<split.lowerBound])
        let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return Response(status: status, headers: head, body: String(text[split.upperBound...]))
    }
}

/// promtool check metrics, when Debian's prometheus package is installed (.ci/run installs it).
enum Promtool {
    static func check(_ text: String) throws {
        let path = "/usr/bin/promtool"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            print("promtool is not installed (apt-get install prometheus): the exposition format is not linted")
            return
        }
        let child = try ChildProcess(name: "promtool", executable: path, arguments: ["check", "metrics"], stderrPath: nil)
        child.write(text)
        child.closeInput()
        #expect(child.waitForOutputEnd(timeout: 30))
        let status = child.waitForExit(timeout: 30)
        #expect(status == 0, "promtool check metrics: \(child.lines.joined(separator: "\n"))")
        #expect(child.lines.isEmpty, "promtool found problems: \(child.lines.joined(separator: "\n"))")
    }
}
