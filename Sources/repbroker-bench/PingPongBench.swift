// repbroker-bench pingpong: round trips on one site. A pinger sends a message, an echo hands it back, the
// pinger waits for it; every round trip is timed. Rows:
// - broker (one per idle strategy): pinger -> broker -> echo -> broker -> pinger, clients on shared-memory
//   rings, the echo answering from inside its receiveAll callback;
// - direct: the same two threads over one TCP loopback connection with TCP_NODELAY (what a direct mesh
//   does), as the baseline of the same run.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
#if canImport(Glibc)
import Glibc
#endif

struct PingPongResult: Codable {
    let path: String
    let roundTrips: Int
    let p50Microseconds: Double
    let p99Microseconds: Double
    let p999Microseconds: Double
    let brokerCPUPercent: Double?
    enum CodingKeys: String, CodingKey {
        case path, roundTrips = "round_trips", p50Microseconds = "p50_us", p99Microseconds = "p99_us",
             p999Microseconds = "p999_us", brokerCPUPercent = "broker_cpu_percent"
    }

    init(path: String, nanoseconds: [UInt64], brokerCPUPercent: Double?) {
        let sorted = nanoseconds.sorted()
        func percentile(_ p: Double) -> Double { Double(sorted.percentile(p) ?? 0) / 1000 }
        self.path = path
        roundTrips = sorted.count
        p50Microseconds = percentile(0.5)
        p99Microseconds = percentile(0.99)
        p999Microseconds = percentile(0.999)
        self.brokerCPUPercent = brokerCPUPercent
    }
}

enum PingPongBench {
    /// Round trips through a broker started with `strategy`.
    static func measureBroker(strategy: IdleStrategyKind, size: Int, count: Int, clientSpin: Double) throws -> PingPongResult {
        let sites = try LocalSites(count: 1, extraArguments: ["--log-level", "warning", "--idle-strategy", strategy.rawValue],
                                   program: .current("daemon"))
        defer { sites.shutDown() }
        try sites.start()
        let broker = sites.broker(1)
        func client(_ group: String, _ roles: ClientRoles, _ name: String) throws -> BrokerClient {
            var options = BrokerClientOptions(socketPath: broker.socketPath, group: group, name: name, roles: roles)
            options.transport = .sharedMemory
            options.receiveSpin = clientSpin
            return try BrokerClient(options: options)
        }
        // Group "ping" carries pinger -> echo, group "pong" echo -> pinger (one receiver per group and site).
        let pingOut = try client("ping", [.sender], "pinger-out")
        let pongIn = try client("pong", [.receiver], "pinger-in")
        let pingIn = try client("ping", [.receiver], "echo-in")
        let pongOut = try client("pong", [.sender], "echo-out")
        defer { [pingOut, pongIn, pingIn, pongOut].forEach { $0.close() } }
        guard pongIn.waitForReceiverRole(timeout: 10), pingIn.waitForReceiverRole(timeout: 10) else {
            throw HarnessError("the bench clients did not get the receiver role")
        }
        let site = pingOut.siteID
        let stop = BenchFlag()
        startThread {
            while !stop.isSet {
                _ = try? pingIn.receiveAll(timeout: 0.2) { message in
                    try? pongOut.send(control: message.control, rec: message.rec, lsn: message.lsn, to: site)
                }
            }
            stop.finish()
        }
        let rec = [UInt8](repeating: 0x33, count: size)
        let pid = broker.child?.pid ?? 0
        let warmUp = min(1000, count)
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        var cpuBefore = 0.0
        var started: UInt64 = 0
        try rec.withUnsafeBytes { recBytes in
            let empty = UnsafeRawBufferPointer(start: nil, count: 0)
            for index in 0..<(warmUp + count) {
                if index == warmUp {
                    cpuBefore = ProcessStats.cpuSeconds(pid)
                    started = Posix.monotonicNanoseconds()
                }
                let sequence = UInt32(truncatingIfNeeded: index + 1)
                let sent = Posix.monotonicNanoseconds()
                try pingOut.send(control: empty, rec: recBytes, lsn: LSN(file: 1, offset: sequence), to: site)
                var back = false
                while !back {
                    guard try pongIn.receiveAll(timeout: 5, { back = back || $0.lsn.offset == sequence }) > 0 else {
                        throw HarnessError("round trip \(index) got no answer in 5 s")
                    }
                }
                if index >= warmUp { samples.append(Posix.monotonicNanoseconds() - sent) }
            }
        }
        let elapsed = Double(Posix.monotonicNanoseconds() - started) / 1e9
        let cpu = (ProcessStats.cpuSeconds(pid) - cpuBefore) / elapsed * 100
        stop.set()
        stop.waitFinished()
        return PingPongResult(path: "broker (\(strategy.rawValue))", nanoseconds: samples, brokerCPUPercent: cpu)
    }

    /// The same round trips over one TCP loopback connection between the two threads, TCP_NODELAY on both ends.
    static func measureDirect(size: Int, count: Int) throws -> PingPongResult {
        let listening = try Socket.listenTCP(SocketAddress("127.0.0.1:0"))
        let listener = listening.number
        guard let port = Socket.localPort(listener) else { throw HarnessError("no port for the direct baseline") }
        let connected = try Socket.connectTCPBlocking(SocketAddress("127.0.0.1:\(port)"))
        let pinger = connected.number
        var accepted: OwnedDescriptor?
        let deadline = Posix.monotonicNanoseconds() + 5_000_000_000
        while accepted == nil && Posix.monotonicNanoseconds() < deadline { accepted = try Socket.accept(listener) }
        guard let echoing = accepted else { throw HarnessError("the direct baseline could not accept its connection") }
        let echo = echoing.number
        // All three close when this returns (the echo thread has stopped by then).
        defer { withExtendedLifetime((listening, connected, echoing)) {} }
        try Posix.setNonBlocking(descriptor: echo, false)
        Socket.setNoDelay(pinger)
        Socket.setNoDelay(echo)
        let frameSize = Wire.frameHeaderSize + Wire.messageHeaderSize + size
        let stop = BenchFlag()
        startThread {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: frameSize, alignment: 8)
            defer { buffer.deallocate() }
            while readFully(echo, buffer, frameSize), writeFully(echo, buffer, frameSize) {}
            stop.finish()
        }
        let message = UnsafeMutableRawPointer.allocate(byteCount: frameSize, alignment: 8)
        defer { message.deallocate() }
        message.initializeMemory(as: UInt8.self, repeating: 0x33, count: frameSize)
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        let warmUp = min(1000, count)
        for index in 0..<(warmUp + count) {
            let sent = Posix.monotonicNanoseconds()
            guard writeFully(pinger, message, frameSize), readFully(pinger, message, frameSize) else {
                throw HarnessError("the direct baseline's connection broke")
            }
            if index >= warmUp { samples.append(Posix.monotonicNanoseconds() - sent) }
        }
        shutdown(pinger, CInt(SHUT_WR))
        stop.waitFinished()
        return PingPongResult(path: "direct TCP", nanoseconds: samples, brokerCPUPercent: nil)
    }

    private static func readFully(_ fd: CInt, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Bool {
        var done = 0
        while done < count {
            let n = Glibc.read(fd, buffer + done, count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }

    private static func writeFully(_ fd: CInt, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Bool {
        var done = 0
        while done < count {
            let n = Glibc.send(fd, buffer + done, count - done, CInt(MSG_NOSIGNAL))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }

    static func table(_ results: [PingPongResult], direct: PingPongResult) -> String {
        var text = "path                 round trips   p50 us   p99 us  p99.9 us  p50/direct  broker CPU\n"
        for result in results + [direct] {
            let ratio = result.p50Microseconds / max(direct.p50Microseconds, 0.001)
            text += result.path.padding(toLength: 20, withPad: " ", startingAt: 0)
                + String(format: " %11d %8.1f %8.1f %9.1f %10.2fx", result.roundTrips, result.p50Microseconds,
                         result.p99Microseconds, result.p999Microseconds, ratio)
                + (result.brokerCPUPercent.map { String(format: " %9.0f%%", $0) } ?? "          -") + "\n"
        }
        return text
    }
}
