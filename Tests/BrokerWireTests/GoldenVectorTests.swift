// Every golden frame in ipc/vectors/frames.json decodes to its fields and re-encodes to the same bytes;
// every invalid one is rejected with the named error.
import BrokerWire
import Foundation
import Testing

struct VectorFile: Decodable {
    struct Valid: Decodable {
        let name: String
        let type: String
        let hex: String
        let fields: [String: JSONValue]
    }
    struct Invalid: Decodable {
        let name: String
        let hex: String
        let error: String
    }
    let max_message: Int
    let valid: [Valid]
    let invalid: [Invalid]

    static func load() throws -> VectorFile {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let data = try Data(contentsOf: root.appendingPathComponent("ipc/vectors/frames.json"))
        return try JSONDecoder().decode(VectorFile.self, from: data)
    }
}

enum JSONValue: Decodable, Equatable {
    case int(Int64), uint(UInt64), string(String)
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Int64.self) { self = .int(value) }
        else if let value = try? container.decode(UInt64.self) { self = .uint(value) }
        else { self = .string(try container.decode(String.self)) }
    }
    var integer: UInt64 {
        switch self {
        case .int(let v): return UInt64(bitPattern: v)
        case .uint(let v): return v
        case .string: return 0
        }
    }
    var int64: Int64 { if case .int(let v) = self { return v }; return Int64(bitPattern: integer) }
    var text: String { if case .string(let s) = self { return s }; return "" }
}

func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        out.append(UInt8(hex[index..<next], radix: 16) ?? 0)
        index = next
    }
    return out
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

/// Decodes one whole frame and re-encodes it with the Swift codecs; returns the fields seen.
func roundTrip(_ frameBytes: [UInt8], maxMessage: Int) throws -> (type: FrameType, fields: [String: String], encoded: [UInt8]) {
    try frameBytes.withUnsafeBytes { raw in
        guard let frame = try FrameParser.next(in: raw, maxMessage: maxMessage) else {
            throw WireError.malformed(type: .error, reason: "incomplete vector")
        }
        #expect(frame.totalSize == frameBytes.count)
        var fields: [String: String] = [:]
        var encoded: [UInt8]
        switch frame.type {
        case .register:
            let f = try RegisterFrame(body: frame.body)
            fields = ["version": "\(f.version)", "min_version": "\(f.minVersion)", "roles": "\(f.roles.rawValue)", "pid": "\(f.pid)", "group": f.group,
                      "name": f.name, "ring_bytes": "\(f.ringBytes)"]
            encoded = FrameParser.encode(.register, body: f.body)
        case .welcome:
            let f = try WelcomeFrame(body: frame.body)
            fields = ["version": "\(f.version)", "role_state": "\(f.roleState.rawValue)", "site_id": "\(f.siteID)",
                      "client_id": "\(f.clientID)", "ring_bytes": "\(f.ringBytes)", "max_message": "\(f.maxMessage)"]
            encoded = FrameParser.encode(.welcome, body: f.body)
        case .role:
            let f = try RoleFrame(body: frame.body)
            fields = ["role_state": "\(f.roleState.rawValue)"]
            encoded = FrameParser.encode(.role, body: f.body)
        case .sendResult:
            let f = try SendResultFrame(body: frame.body)
            fields = ["sequence": "\(f.sequence)", "status": "\(f.status.rawValue)",
                      "acked": f.acked.map(String.init).joined(separator: ","),
                      "missing": f.missing.map(String.init).joined(separator: ",")]
            encoded = FrameParser.encode(.sendResult, body: f.body)
        case .error:
            let f = try ErrorFrame(body: frame.body)
            fields = ["code": "\(f.code)", "reason": f.reason]
            encoded = FrameParser.encode(.error, body: f.body)
        case .message:
            let h = try MessageHeader(body: frame.body)
            let (control, rec) = MessageHeader.payload(of: frame.body, h)
            fields = ["group": "\(h.group)", "source": "\(h.source)", "destination": "\(h.destination)",
                      "flags": "\(h.flags.rawValue)", "lsn_file": "\(h.lsn.file)", "lsn_offset": "\(h.lsn.offset)",
                      "control": hex(Array(control)), "rec": hex(Array(rec)), "sequence": "\(h.sequence)"]
            let buffer = ByteBuffer(capacity: 16)
            h.append(control: control, rec: rec, to: buffer)
            encoded = Array(buffer.readable)
        case .hello:
            let f = try HelloFrame(body: frame.body)
            fields = ["magic": "\(f.magic)", "version": "\(f.version)", "max_version": "\(f.maxVersion)", "site_id": "\(f.siteID)",
                      "incarnation": "\(f.incarnation)", "address": f.address, "joining": f.joining ? "1" : "0",
                      "keyed": f.keyed ? "1" : "0", "nonce": hex(f.nonce), "window": "\(f.window)"]
            encoded = FrameParser.encode(.hello, body: f.body)
        case .siteEvent:
            let f = try SiteEventFrame(body: frame.body)
            fields = ["site_id": "\(f.siteID)", "up": f.up ? "1" : "0"]
            encoded = FrameParser.encode(.siteEvent, body: f.body)
        case .ack:
            let f = try AckFrame(body: frame.body)
            fields = ["lsn_file": "\(f.lsn.file)", "lsn_offset": "\(f.lsn.offset)", "site_id": "\(f.siteID)"]
            encoded = FrameParser.encode(.ack, body: f.body)
        case .ackPolicy:
            let f = try AckPolicyFrame(body: frame.body)
            fields = ["policy": "\(f.policy.rawValue)", "timeout_ms": "\(f.timeoutMilliseconds)"]
            encoded = FrameParser.encode(.ackPolicy, body: f.body)
        case .master:
            let f = try MasterFrame(localBody: frame.body)
            fields = ["site_id": "\(f.siteID)"]
            encoded = FrameParser.encode(.master, body: f.localBody)
        case .peerAck:
            let f = try PeerAckFrame(body: frame.body)
            fields = ["group": "\(f.group)", "lsn_file": "\(f.lsn.file)", "lsn_offset": "\(f.lsn.offset)"]
            let buffer = ByteBuffer(capacity: 8)
            f.append(to: buffer)
            encoded = Array(buffer.readable)
            #expect(encoded == FrameParser.encode(.peerAck, body: f.body))
        case .credit:
            let f = try CreditFrame(body: frame.body)
            fields = ["group": "\(f.group)", "class": "\(f.trafficClass.rawValue)", "bytes": "\(f.bytes)",
                      "acked": "\(f.acked)"]
            let buffer = ByteBuffer(capacity: 8)
            f.append(to: buffer)
            encoded = Array(buffer.readable)
            #expect(encoded == FrameParser.encode(.credit, body: f.body))
        case .peerMaster:
            let f = try MasterFrame(peerBody: frame.body)
            fields = ["group": "\(f.group)", "site_id": "\(f.siteID)"]
            encoded = FrameParser.encode(.peerMaster, body: f.peerBody)
        case .subscribe:
            let f = try SubscribeFrame(body: frame.body)
            fields = ["channel": f.channel]
            encoded = FrameParser.encode(.subscribe, body: f.body)
        case .channel:
            let f = try ChannelFrame(body: frame.body)
            fields = ["group": "\(f.group)", "source": "\(f.source)", "destination": "\(f.destination)",
                      "kind": "\(f.kind.rawValue)", "channel": f.channel, "request_id": "\(f.requestID)",
                      "requester": "\(f.requester)", "payload": hex(f.payload)]
            encoded = FrameParser.encode(.channel, body: f.body)
        case .channelResult:
            let f = try ChannelResultFrame(body: frame.body)
            fields = ["request_id": "\(f.requestID)", "requester": "\(f.requester)", "status": "\(f.status.rawValue)"]
            encoded = FrameParser.encode(.channelResult, body: f.body)
        case .auth:
            let f = try AuthFrame(body: frame.body)
            fields = ["mac": hex(f.mac)]
            encoded = FrameParser.encode(.auth, body: f.body)
        case .members:
            let f = try MembersFrame(body: frame.body)
            fields = ["count": "\(f.members.count)",
                      "members": f.members.map { "\($0.siteID)=\($0.address)" }.joined(separator: ",")]
            encoded = FrameParser.encode(.members, body: f.body)
        case .removeSite:
            let f = try RemoveSiteFrame(body: frame.body)
            fields = ["site_id": "\(f.siteID)"]
            encoded = FrameParser.encode(.removeSite, body: f.body)
        case .activate:
            #expect(frame.body.isEmpty)
            encoded = FrameParser.encode(frame.type, body: [])
        case .heartbeat:
            if let f = try HeartbeatFrame(body: frame.body) {
                fields = ["kind": "\(f.kind.rawValue)", "timestamp": "\(f.timestamp)"]
                encoded = FrameParser.encode(.heartbeat, body: f.body)
            } else {
                #expect(frame.body.isEmpty)
                encoded = FrameParser.encode(frame.type, body: [])
            }
        case .peerReceiver:
            let f = try PeerReceiverFrame(body: frame.body)
            fields = ["group": "\(f.group)", "present": f.present ? "1" : "0"]
            encoded = FrameParser.encode(.peerReceiver, body: f.body)
        case .groupBind:
            let f = try GroupBindFrame(body: frame.body)
            fields = ["group": "\(f.group)", "name": f.name]
            encoded = FrameParser.encode(.groupBind, body: f.body)
        }
        return (frame.type, fields, encoded)
    }
}

@Suite struct GoldenVectorTests {
    @Test func validFramesDecodeAndReencodeByteForByte() throws {
        let file = try VectorFile.load()
        #expect(file.valid.count >= 30)
        for vector in file.valid {
            let input = bytes(hex: vector.hex)
            let (type, fields, encoded) = try roundTrip(input, maxMessage: file.max_message)
            #expect("\(type)" == vector.type, "\(vector.name)")
            #expect(hex(encoded) == vector.hex, "\(vector.name) re-encodes differently")
            if vector.type == "AUTH" {
                // The MAC is the proof the broker computes, checked against Python's hmac module.
                let proof = AuthFrame.proof(key: bytes(hex: vector.fields["key"]?.text ?? ""),
                                            prover: Int32(vector.fields["prover"]?.int64 ?? 0),
                                            proverNonce: bytes(hex: vector.fields["prover_nonce"]?.text ?? ""),
                                            verifierNonce: bytes(hex: vector.fields["verifier_nonce"]?.text ?? ""))
                #expect(hex(proof) == vector.fields["mac"]?.text)
            }
            for (key, expected) in vector.fields where !["key", "prover", "prover_nonce", "verifier_nonce"].contains(key) {
                let want: String
                switch expected {
                case .string(let s): want = s
                case .int(let v): want = ["destination", "source", "site_id", "pid"].contains(key) ? "\(v)" : "\(UInt64(bitPattern: v))"
                case .uint(let v): want = "\(v)"
                }
                #expect(fields[key] == want, "\(vector.name).\(key)")
            }
        }
    }

    @Test func invalidFramesAreRejectedWithTheNamedError() throws {
        let file = try VectorFile.load()
        #expect(file.invalid.count >= 33)
        for vector in file.invalid {
            do {
                _ = try roundTrip(bytes(hex: vector.hex), maxMessage: file.max_message)
                Issue.record("\(vector.name) was accepted")
            } catch let error as WireError {
                let kind: String
                switch error {
                case .badMagic: kind = "badMagic"
                case .reservedNotZero: kind = "reservedNotZero"
                case .unknownType: kind = "unknownType"
                case .tooLarge: kind = "tooLarge"
                case .malformed: kind = "malformed"
                case .unexpected: kind = "unexpected"
                case .notRegistered: kind = "notRegistered"
                }
                #expect(kind == vector.error, "\(vector.name): \(error)")
            }
        }
    }

    @Test func aChannelHeaderMayAnnounceMoreThanTheControlLimit() throws {
        // CHANNEL payloads are limited like a MESSAGE's control + rec, not by the 65536 of control frames.
        let length = UInt32(65_537)
        var header = withUnsafeBytes(of: length.littleEndian) { Array($0) }
        header += [FrameType.channel.rawValue, Wire.frameMagic, 0, 0]
        let pending = header.withUnsafeBytes { FrameParser.pendingFrameSize(in: $0) }
        #expect(pending == 8 + 65_537)
        let none = try header.withUnsafeBytes { try FrameParser.next(in: $0, maxMessage: 1 << 20) }
        #expect(none == nil, "a valid header waits for its body")
    }

    @Test func anOversizedLengthIsRejectedBeforeTheBodyArrives() throws {
        // Only the 8 header bytes: a parser that waited for the body would return nil instead.
        let header = bytes(hex: "ffffff7f10b70000")
        #expect(throws: WireError.self) {
            try header.withUnsafeBytes { _ = try FrameParser.next(in: $0, maxMessage: 1 << 20) }
        }
    }
}
