// Where ipc/PROTOCOL.md and the broker once disagreed, the broker now does what the page says: a frame before
// REGISTER is ERROR 7, unknown role bits are a bad frame, a channel goes nowhere a message could not (removed
// sites, broadcast), and a delivered MESSAGE carries what the page says it carries.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
@testable import BrokerWire
import CRepBrokerIPC
import Foundation
@testable import RepBrokerClient
import Testing

/// A raw connection to a broker's local socket: writes `bytes`, returns the ERROR the broker answers with.
func errorAnswer(_ socketPath: String, _ bytes: [UInt8]) throws -> ErrorFrame? {
    let socket = try Socket.connectUnix(path: socketPath)
    let fd = socket.number
    defer { withExtendedLifetime(socket) {} }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
    let buffer = ByteBuffer(capacity: 4096)
    while true {
        if let frame = try FrameParser.next(in: buffer.readable, maxMessage: 1 << 20) {
            guard frame.type == .error else { return nil }
            return try ErrorFrame(body: frame.body)
        }
        buffer.reserve(1024)
        guard case .processed(let n) = try Posix.read(descriptor: fd, into: buffer.writable), n > 0 else { return nil }
        buffer.commit(n)
    }
}

@Suite struct SpecConformanceTests {
    @Test func aFrameBeforeRegisterIsErrorNotRegisteredAndCounted() throws {
        try withSites(1) { sites in
            let answer = try errorAnswer(sites.broker(1).socketPath, FrameParser.encode(.ack, body: [UInt8](repeating: 0, count: 8)))
            #expect(answer?.code == ErrorCode.notRegistered.rawValue, "\(String(describing: answer))")
            #expect(sites.broker(1).waitForStats(timeout: 5) { $0.totals.badFrames == 1 })
        }
    }

    @Test func unknownRoleBitsAreABadFrame() throws {
        try withSites(1) { sites in
            let register = RegisterFrame(roles: ClientRoles(rawValue: 0x4), pid: 1, group: "g", name: "", ringBytes: 0)
            let answer = try errorAnswer(sites.broker(1).socketPath, FrameParser.encode(.register, body: register.body))
            #expect(answer?.code == ErrorCode.badFrame.rawValue, "\(String(describing: answer))")
        }
    }

    @Test func aChannelToARemovedSiteIsUnroutableLikeAMessage() throws {
        try withSites(3) { sites in
            let (status, _) = try runToExit("repbroker", ["remove-site", "--admin-socket", sites.broker(1).adminSocketPath, "3"])
            #expect(status == 0)
            let sender = try client(sites.broker(1))
            defer { sender.close() }
            #expect(throws: BrokerClientError.unroutable(3)) {
                try sender.send(control: [], rec: [1], to: 3, flags: .permanent)
            }
            #expect(throws: BrokerClientError.unroutable(3)) {
                try sender.send(channel: "writes", to: 3, payload: [1], timeout: 5)
            }
        }
    }

    /// The version is read first: a client or peer of another version may lay the rest out differently, so it
    /// gets ERROR 1 (not counted as a bad frame) whatever follows its version field.
    @Test func theVersionIsCheckedBeforeTheLayout() throws {
        try withSites(1) { sites in
            var register = [UInt8](repeating: 0xEE, count: 30)
            register[0] = 9
            register[1] = 0
            let answer = try errorAnswer(sites.broker(1).socketPath, FrameParser.encode(.register, body: register))
            #expect(answer?.code == ErrorCode.version.rawValue, "\(String(describing: answer))")
            #expect(answer?.reason.contains("protocol version 9") == true)
            var hello = HelloFrame(siteID: 7, incarnation: 1, address: "").body
            hello[4] = 9
            hello[26] = 0xFF  // flags this version does not know
            let raw = try RawConnection.tcp(port: sites.broker(1).port)
            raw.write(FrameParser.encode(.hello, body: hello))
            let peerAnswer = RawConnection.errorReasons(raw.readUntilClosed() ?? [])
            raw.close()
            #expect(peerAnswer.contains { $0.contains("protocol version 9") }, "\(peerAnswer)")
            #expect(try sites.broker(1).stats().totals.badFrames == 0)
        }
    }

    /// Out of descriptors for a client's rings (a memfd and two eventfds), the broker answers WELCOME with
    /// ring_bytes 0 and no descriptors: the client is served on the socket.
    @Test func outOfDescriptorsForRingsAClientIsServedOnTheSocket() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let broker = BrokerProcess(siteID: 1, port: FreePort.next(), directory: directory.path, peers: [],
                                   extraArguments: ["--max-clients", "1000"], program: brokerWithDescriptorLimit(40))
        try broker.start()
        defer { broker.terminate() }
        var clients: [RawClient] = []
        defer { clients.forEach { $0.close() } }
        var socketOnly: RawClient?
        while socketOnly == nil, clients.count < 40, let next = try? RawClient(socketPath: broker.socketPath,
                                                                              name: "c\(clients.count)", ringBytes: 65536) {
            clients.append(next)
            if next.welcome?.ringBytes == 0 { socketOnly = next }
        }
        let served = try #require(socketOnly, "every client got rings, or none was served")
        #expect(clients.count > 1, "the first clients got rings")
        served.send(sequence: 1, to: 1, rec: [1])
        #expect(Deadline.wait(timeout: 10) { (try? served.pump(waitMilliseconds: 20)) != nil && served.results[1] != nil })
        #expect(broker.log.contains("cannot set up shared-memory rings"))
        #expect(try broker.stats().clients.contains { $0.name == "c\(clients.count - 1)" && $0.transport == "uds" })
    }

    /// The admin socket's JSON: every counter an integer; fields that have no value yet are absent (not null).
    @Test func adminStatsHaveIntegersAndOmitWhatHasNoValue() throws {
        try withSites(2) { sites in
            let ring = try client(sites.broker(1), name: "ring", transport: .sharedMemory)
            defer { ring.close() }
            let socket = try client(sites.broker(1), name: "socket", transport: .unixSocket)
            defer { socket.close() }
            let data = try AdminClient.query("stats", adminSocket: sites.broker(1).adminSocketPath)
            let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            func integers(_ object: [String: Any], _ keys: [String], _ what: String) {
                for key in keys { #expect(object[key] is Int, "\(what).\(key) is \(String(describing: object[key]))") }
            }
            integers(document, ["site_id", "pid", "uptime_ms"], "stats")
            let peer = try #require((document["peers"] as? [[String: Any]])?.first)
            integers(peer, ["site_id", "msgs_sent", "bytes_sent", "msgs_received", "bytes_received", "queued_bytes",
                            "dropped", "refused", "reconnects", "resent", "duplicates", "ms_since_heard"], "peer")
            #expect(peer["state"] as? String == "connected" && peer["address"] is String)
            let clients = try #require(document["clients"] as? [[String: Any]])
            for client in clients {
                integers(client, ["id", "pid", "msgs_sent", "bytes_sent", "msgs_received", "bytes_received",
                                  "queued_bytes", "dropped", "perm_acked", "perm_failed"], "client")
                #expect(client["paused"] is Bool && client["roles"] is [String])
            }
            let ringClient = try #require(clients.first { $0["name"] as? String == "ring" })
            let socketClient = try #require(clients.first { $0["name"] as? String == "socket" })
            integers(ringClient, ["ring_bytes", "ring_to_broker_used", "ring_to_client_used"], "ring client")
            #expect(socketClient["ring_bytes"] == nil && socketClient["ring_to_broker_used"] == nil,
                    "a socket client has no ring fields")
            let group = try #require((document["groups"] as? [[String: Any]])?.first)
            integers(group, ["master", "standbys", "delivered", "pending_msgs", "dropped", "waiting_for_acks"], "group")
            #expect(group["receiver_client"] == nil, "no receiver: the field is absent")
            let totals = try #require(document["totals"] as? [String: Any])
            #expect(totals.values.allSatisfy { $0 is Int }, "\(totals)")
            // A peer never up has no ms_since_heard.
            let lone = try #require(try JSONSerialization.jsonObject(with: AdminClient.query(
                "stats", adminSocket: sites.broker(2).adminSocketPath)) as? [String: Any])
            #expect((lone["peers"] as? [[String: Any]])?.first?["ms_since_heard"] is Int)
        }
    }

    @Test func aDeliveredMessageCarriesSourceDestinationFlagsLSNAndSequenceZero() throws {
        try withSites(2) { sites in
            let receiver = try RawReceiver(sites.broker(2).socketPath)
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.clients.contains { $0.roles == ["receiver"] } })
            let sender = try client(sites.broker(1))
            defer { sender.close() }
            let lsn = LSN(file: 3, offset: 77)
            try sender.send(control: [9], rec: [8], lsn: lsn, to: 2, flags: [.permanent, .noBuffer])
            try sender.send(control: [], rec: [7], to: SiteID.broadcast)
            let unicast = try receiver.nextMessage()
            #expect(unicast.group == 0 && unicast.source == 1 && unicast.destination == 2 && unicast.sequence == 0)
            #expect(unicast.lsn == lsn && unicast.flags == [.permanent, .noBuffer])
            let broadcast = try receiver.nextMessage()
            #expect(broadcast.source == 1 && broadcast.destination == SiteID.broadcast && broadcast.sequence == 0)
        }
    }
}

/// A receiver written from the page alone: REGISTER over the socket (no rings), then MESSAGE headers.
final class RawReceiver {
    let socket: OwnedDescriptor
    var fd: CInt { socket.number }
    let buffer = ByteBuffer(capacity: 1 << 16)

    init(_ socketPath: String) throws {
        socket = try Socket.connectUnix(path: socketPath)
        let fd = socket.number
        let register = RegisterFrame(roles: .receiver, pid: getpid(), group: "default", name: "raw", ringBytes: 0)
        let bytes = FrameParser.encode(.register, body: register.body)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
    }

    func nextMessage() throws -> MessageHeader {
        while true {
            if let frame = try FrameParser.next(in: buffer.readable, maxMessage: 1 << 20) {
                defer { buffer.consume(frame.totalSize) }
                if frame.type == .message { return try MessageHeader(body: frame.body) }
                continue
            }
            buffer.reserve(4096)
            guard case .processed(let n) = try Posix.read(descriptor: fd, into: buffer.writable), n > 0 else {
                throw HarnessError("the broker closed the raw receiver")
            }
            buffer.commit(n)
        }
    }
}

/// A ring client written from the page: REGISTER asking for rings, WELCOME with four descriptors, then records
/// in the to-broker ring (the library's ring code, without its client).
final class RawRingClient {
    let socket: OwnedDescriptor
    var fd: CInt { socket.number }
    let rings: ClientRingSide

    init(_ socketPath: String, group: String = "default") throws {
        let connection = try Socket.connectUnix(path: socketPath)
        let register = RegisterFrame(roles: .sender, pid: getpid(), group: group, name: "raw-ring", ringBytes: 65536)
        let bytes = FrameParser.encode(.register, body: register.body)
        _ = bytes.withUnsafeBytes { send(connection.number, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
        let buffer = ByteBuffer(capacity: 4096)
        var descriptors: [OwnedDescriptor] = []
        while true {
            if let frame = try FrameParser.next(in: buffer.readable, maxMessage: 1 << 20) {
                let welcome = try WelcomeFrame(body: frame.body)
                rings = try ClientRingSide(ringBytes: Int(welcome.ringBytes), maxMessage: Int(welcome.maxMessage),
                                           descriptors: descriptors)
                socket = connection
                return
            }
            buffer.reserve(4096)
            let n = try Socket.receive(into: buffer.writable, on: connection.number, fds: &descriptors)
            guard n > 0 else { throw HarnessError("the broker closed the raw ring client") }
            buffer.commit(n)
        }
    }

    /// Writes `frame` as one FRAME record into the to-broker ring and publishes it.
    func writeToRing(_ frame: [UInt8]) throws { try writeRecord(.frame, frame) }

    func writeRecord(_ kind: RecordKind, _ bytes: [UInt8]) throws {
        let written = try rings.writer.write(kind: kind, payload: bytes.count) { target in
            bytes.withUnsafeBytes { target.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        }
        #expect(written)
        rings.publish()
    }

    func writeToSocket(_ frame: [UInt8]) {
        _ = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
    }
}

/// A whole MESSAGE frame to site `destination` with `count` bytes of rec (each 3) and no control.
func messageFrame(to destination: Int32, recBytes count: Int) -> [UInt8] {
    let header = MessageHeader(destination: destination, flags: [], lsn: .zero, controlLength: 0,
                               recLength: UInt32(count), sequence: 0)
    var frame = [UInt8](repeating: 0, count: header.frameSize)
    let rec = [UInt8](repeating: 3, count: count)
    frame.withUnsafeMutableBytes { raw in
        rec.withUnsafeBytes { header.writeFrame(at: raw.baseAddress!, payload: $0) }
    }
    return frame
}

@Suite struct RingPathConformanceTests {
    /// Only MESSAGE frames go into the to-broker ring; a control frame there closes that client alone.
    @Test func aControlFrameInTheRingIsABadFrame() throws {
        try withSites(1) { sites in
            let bystander = try client(sites.broker(1), name: "bystander")
            defer { bystander.close() }
            let raw = try RawRingClient(sites.broker(1).socketPath)
            try raw.writeToRing(FrameParser.encode(.master, body: MasterFrame(siteID: 2).localBody))
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.totals.badFrames == 1 && $0.clients.count == 1 })
            #expect(try sites.broker(1).stats().groups.first?.master ?? 0 == 0, "the frame was not acted on")
            #expect(bystander.isConnected)
        }
    }

    /// A ring client's messages use its ring: one on the socket would have no defined order with them.
    @Test func aRingClientsMessageOnTheSocketIsABadFrame() throws {
        try withSites(1) { sites in
            let raw = try RawRingClient(sites.broker(1).socketPath)
            let frame = messageFrame(to: 1, recBytes: 1)
            raw.writeToSocket(frame)
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.totals.badFrames == 1 && $0.clients.isEmpty })
        }
    }

    /// A record over ring_bytes / 4 - 8 is refused (a writer puts larger frames in parts), with an ERROR that
    /// says why before the close, as every ring violation is.
    @Test func aRecordOverAQuarterOfTheRingIsRefusedWithAnError() throws {
        try withSites(1) { sites in
            let raw = try RawRingClient(sites.broker(1).socketPath)
            let frame = messageFrame(to: 1, recBytes: 20_000)
            try raw.writeToRing(frame)
            let reasons = RawConnection.errorReasons(RawConnection(socket: raw.socket).readUntilClosed() ?? [])
            #expect(reasons.contains { $0.contains("ring_bytes / 4 - 8") }, "\(reasons)")
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.totals.badFrames == 1 && $0.clients.isEmpty })
        }
    }

    /// A ring whose positions are out of range is answered with an ERROR naming the ring, then closed.
    @Test func aCorruptRingIsAnsweredWithAnError() throws {
        try withSites(1) { sites in
            let raw = try RawRingClient(sites.broker(1).socketPath)
            let ring = raw.rings.writer.ring
            rb_atomic_store_release_u64(ring.head, rb_atomic_load_acquire_u64(ring.tail) + UInt64(ring.size) + 8)
            raw.rings.brokerDoorbell.signal()
            let reasons = RawConnection.errorReasons(RawConnection(socket: raw.socket).readUntilClosed() ?? [])
            #expect(reasons.contains { $0.contains("to-broker ring") && $0.contains("outside") }, "\(reasons)")
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.totals.badFrames == 1 })
        }
    }

    /// Parts that run past the frame they announce close the client with a reason.
    @Test func fragmentsPastTheirFrameAreABadFrame() throws {
        try withSites(1) { sites in
            let raw = try RawRingClient(sites.broker(1).socketPath)
            let frame = messageFrame(to: 1, recBytes: 100)
            try raw.writeRecord(.fragment, Array(frame[..<60]))
            try raw.writeRecord(.fragment, Array(frame[60...]) + [0, 0, 0, 0])
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.totals.badFrames == 1 && $0.clients.isEmpty })
        }
    }
}
