// Garbage and oversized lengths on the local socket and on the peer port: the offending connection is
// closed with a reason and counted in bad_frames; the broker serves every other client and peer on.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Testing

/// A raw blocking connection that writes bytes and reads until the other side closes.
struct RawConnection {
    let socket: OwnedDescriptor
    var fd: CInt { socket.number }

    static func unix(_ path: String) throws -> RawConnection { RawConnection(socket: try Socket.connectUnix(path: path)) }

    static func tcp(port: UInt16) throws -> RawConnection {
        let socket = try Socket.connectTCP(SocketAddress("127.0.0.1:\(port)"))
        try Posix.setNonBlocking(descriptor: socket.number, false)
        var pollfd = pollfd(fd: socket.number, events: Int16(POLLOUT), revents: 0)
        _ = poll(&pollfd, 1, 5000)
        return RawConnection(socket: socket)
    }

    func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
    }

    /// Everything read until EOF (or 10 s); nil if the connection stayed open.
    func readUntilClosed() -> [UInt8]? {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { return all }
            if n < 0 { return errno == ECONNRESET ? all : nil }
            all += chunk[0..<n]
        }
    }

    /// The ERROR frames' reasons in `bytes`.
    static func errorReasons(_ bytes: [UInt8]) -> [String] {
        var reasons: [String] = []
        bytes.withUnsafeBytes { raw in
            var rest = raw
            while let frame = try? FrameParser.next(in: rest, maxMessage: 1 << 20) {
                if frame.type == .error, let error = try? ErrorFrame(body: frame.body) { reasons.append(error.reason) }
                rest = UnsafeRawBufferPointer(rebasing: rest[frame.totalSize...])
            }
        }
        return reasons
    }

    func close() { socket.close() }
}

func header(type: UInt8, length: UInt32) -> [UInt8] {
    withUnsafeBytes(of: length.littleEndian) { Array($0) } + [type, Wire.frameMagic, 0, 0]
}

@Suite struct BadInputTests {
    @Test func badFramesOnTheLocalSocketCloseOnlyThatClient() throws {
        try withSites(2) { sites in
            let site1 = sites.broker(1)
            let receiver = try client(sites.broker(2), roles: [.receiver])
            let good = try client(site1, name: "good")
            let register = FrameParser.encode(.register, body: RegisterFrame(roles: .sender, pid: 1, group: "default",
                                                                               name: "bad").body)
            let badMessage = FrameParser.encode(.message, body: Array(repeating: 0xFF, count: 40))
            let inputs: [(String, [UInt8])] = [
                ("garbage", Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
                ("oversized length", header(type: FrameType.message.rawValue, length: 0xFFFF_FFF0)),
                ("message before register", FrameParser.encode(.heartbeat, body: [])),
                ("bad message after register", register + badMessage),
            ]
            for (name, bytes) in inputs {
                let raw = try RawConnection.unix(site1.socketPath)
                raw.write(bytes)
                let answer = raw.readUntilClosed()
                raw.close()
                #expect(answer != nil, "\(name): the broker kept the connection open")
                #expect(!RawConnection.errorReasons(answer ?? []).isEmpty, "\(name): no ERROR frame with a reason")
                try good.send(control: [], rec: Array(name.utf8), to: 2)
                #expect(try receiver.receive(timeout: 10)?.rec == Array(name.utf8), "\(name): traffic stopped")
            }
            let stats = try site1.stats()
            #expect(stats.totals.badFrames == inputs.count)
            #expect(stats.clients.map(\.name) == ["good"])
            #expect(site1.log.contains("bad frame from a client"))
        }
    }

    @Test func badFramesOnThePeerPortCloseOnlyThatConnection() throws {
        try withSites(2) { sites in
            let site1 = sites.broker(1)
            let receiver = try client(sites.broker(2), roles: [.receiver])
            let sender = try client(site1)
            let inputs: [(String, [UInt8], Bool)] = [
                ("garbage", Array(repeating: 0x41, count: 64), true),
                ("oversized length", header(type: FrameType.message.rawValue, length: 0x7FFF_FFFF), true),
                ("message before hello", FrameParser.encode(.heartbeat, body: []), true),
                ("unknown site", FrameParser.encode(.hello, body: HelloFrame(siteID: 99, incarnation: 1).body), false),
                ("own site id", FrameParser.encode(.hello, body: HelloFrame(siteID: 1, incarnation: 1).body), false),
                ("future versions", FrameParser.encode(.hello, body: HelloFrame(versions: 9...10, siteID: 2, incarnation: 1).body), false),
                // A version 3 broker's HELLO, the same layout: refused for its version (its acks went to every site).
                ("version 3 broker", FrameParser.encode(.hello, body: HelloFrame(versions: 3...3, siteID: 2, incarnation: 1).body),
                 false),
            ]
            var expectedBadFrames = 0
            for (name, bytes, isBadFrame) in inputs {
                let raw = try RawConnection.tcp(port: site1.port)
                raw.write(bytes)
                let answer = raw.readUntilClosed()
                raw.close()
                #expect(answer != nil, "\(name): the broker kept the connection open")
                #expect(!RawConnection.errorReasons(answer ?? []).isEmpty, "\(name): no ERROR frame with a reason")
                if isBadFrame { expectedBadFrames += 1 }
                try sender.send(control: [], rec: Array(name.utf8), to: 2)
                #expect(try receiver.receive(timeout: 10)?.rec == Array(name.utf8), "\(name): traffic stopped")
            }
            let stats = try site1.stats()
            #expect(stats.totals.badFrames == expectedBadFrames)
            #expect(stats.peers[0].state == .connected && stats.peers[0].reconnects == 0)
            #expect(site1.log.contains("is not a configured peer"))
            #expect(site1.log.contains("peer speaks protocol version 9 ... 10, this broker speaks 5 ... 6"))
            #expect(site1.log.contains("peer speaks protocol version 3, this broker speaks 5 ... 6"))
        }
    }

    /// A client of protocol version 1 (rings with MARK records, control frames in the rings) is refused with
    /// ERROR 1 and a reason naming both versions; it is not counted as a bad frame.
    @Test func aClientOfTheOldProtocolVersionIsRefusedWithAReason() throws {
        try withSites(1) { sites in
            let raw = try RawConnection.unix(sites.broker(1).socketPath)
            let old = RegisterFrame(versions: 1...1, roles: .sender, pid: 1, group: "default", name: "old", ringBytes: 65536)
            raw.write(FrameParser.encode(.register, body: old.body))
            let answer = try #require(raw.readUntilClosed())
            raw.close()
            let reasons = RawConnection.errorReasons(answer)
            #expect(reasons.contains { $0.contains("protocol version 1;") && $0.contains("speaks 5 ... 6") }, "\(reasons)")
            let stats = try sites.broker(1).stats()
            #expect(stats.clients.isEmpty && stats.totals.badFrames == 0)
        }
    }

    /// Names a client chose and a peer's ERROR reason reach the log escaped: a line break cannot forge a log
    /// line, and no control or escape byte reaches the operator's terminal (the log or `repbroker stats`).
    @Test func textFromOutsideIsEscapedInTheLogAndTheStatsTable() throws {
        try withSites(1) { sites in
            let broker = sites.broker(1)
            let forged = "2026-01-01T00:00:00.000Z error repbrokerd: FORGED"
            let named = try client(broker, name: "n\n\(forged)\u{1B}[2J", group: "g\r\(forged)")
            defer { named.close() }
            let raw = try RawConnection.tcp(port: broker.port)
            raw.write(FrameParser.encode(.error, body: ErrorFrame(code: .unknownSite, reason: "r\n\(forged)\u{7}").body))
            _ = raw.readUntilClosed()
            raw.close()
            #expect(Deadline.wait(timeout: 10) { broker.log.contains("peer refused the connection") })
            let lines = broker.log.split(separator: "\n")
            #expect(!lines.contains { $0.hasPrefix("2026-01-01") }, "a forged line: \(lines)")
            #expect(!broker.log.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })
            #expect(broker.log.contains("client.name=\"n\\n\(forged)\\u{1B}[2J\""))
            #expect(broker.log.contains("group=\"g\\r\(forged)\""))
            #expect(broker.log.contains("r\\n\(forged)\\u{7}"))
            let table = try broker.stats().table
            #expect(!table.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" } && !table.contains("\n\(forged)"))
        }
    }
}
