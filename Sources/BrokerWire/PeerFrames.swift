// Frames of the peer links only: HELLO, AUTH, MEMBERS, REMOVE_SITE, GROUP_BIND and PEER_ACK. Every length
// is checked against the body and the named limits before use.

/// HELLO: the first frame on a peer connection, both ways.
public struct HelloFrame: Equatable, Sendable {
    /// The version field of a HELLO body with the right magic, read before anything else (a peer of another
    /// version may lay the rest out differently); nil when the body is too short or its magic is wrong.
    public static func version(of body: UnsafeRawBufferPointer) -> UInt16? {
        guard body.count >= 6, let p = body.baseAddress, p.le32(0) == Wire.peerHelloMagic else { return nil }
        return p.le16(4)
    }

    /// The versions the sender speaks, read before anything else: `version` is the oldest, the field after it
    /// the newest (0 from a broker of protocol 5, which speaks its version alone); nil as for `version(of:)`.
    public static func versions(of body: UnsafeRawBufferPointer) -> ClosedRange<UInt16>? {
        guard let oldest = version(of: body), body.count >= 8 else { return nil }
        let newest = body.baseAddress.unsafelyUnwrapped.le16(6)
        return oldest...max(oldest, newest)
    }

    public var magic: UInt32
    /// The oldest version the sender speaks (a broker of protocol 5 accepts a HELLO whose version is 5).
    public var version: UInt16
    /// The newest version the sender speaks (0 on the wire from a broker of protocol 5: `version` alone).
    public var maxVersion: UInt16
    public var versions: ClosedRange<UInt16> { version...max(version, maxVersion) }
    public var siteID: Int32
    public var incarnation: UInt64
    /// Where the sender listens for peers (HOST:PORT), empty when it does not.
    public var address: String
    /// The sender is joining the group: its unknown site id is to be accepted.
    public var joining: Bool
    /// The sender has a group key: both sides prove it with AUTH before anything else.
    public var keyed: Bool
    /// Random per connection, the challenge of the other side's AUTH.
    public var nonce: [UInt8]
    /// The window the sender grants each of the other side's flows (bytes of data frames it may send before
    /// a CREDIT frame returns some); 0 is refused.
    public var window: UInt32

    public init(magic: UInt32 = Wire.peerHelloMagic, versions: ClosedRange<UInt16> = Wire.protocolVersions, siteID: Int32,
                incarnation: UInt64, address: String = "", joining: Bool = false, keyed: Bool = false,
                nonce: [UInt8] = [UInt8](repeating: 0, count: 16), window: UInt32 = Wire.defaultFlowWindow) {
        self.magic = magic
        self.version = versions.lowerBound
        self.maxVersion = versions.upperBound
        self.siteID = siteID
        self.incarnation = incarnation
        self.address = address
        self.joining = joining
        self.keyed = keyed
        self.nonce = nonce
        self.window = window
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(magic)
        w.put(version)
        w.put(maxVersion)
        w.put(siteID)
        w.put(UInt32(0))
        w.put(incarnation)
        w.put(UInt16(address.utf8.count))
        w.put(UInt16((joining ? 1 : 0) | (keyed ? 2 : 0)))
        w.put(window)
        w.put(nonce.prefix(16) + [UInt8](repeating: 0, count: max(0, 16 - nonce.count)))
        w.put(address.utf8)
        return w.bytes
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 48, .hello, exact: false)
        let p = body.baseAddress.unsafelyUnwrapped
        magic = p.le32(0)
        version = p.le16(4)
        maxVersion = p.le16(6)
        siteID = p.leInt32(8)
        incarnation = p.le64(16)
        let length = Int(p.le16(24))
        let flags = p.le16(26)
        window = p.le32(28)
        guard magic == Wire.peerHelloMagic else {
            throw .malformed(type: .hello, reason: "bad magic 0x\(String(magic, radix: 16))")
        }
        guard flags & ~3 == 0 else { throw .malformed(type: .hello, reason: "unknown flags \(flags)") }
        guard 48 + length == body.count else { throw .malformed(type: .hello, reason: "address length does not fill the body") }
        guard window >= Wire.minFlowWindow else {
            throw .malformed(type: .hello, reason: "flow window \(window) is below \(Wire.minFlowWindow) bytes")
        }
        address = try decodeName(body, at: 48, length: length, limit: Wire.maxAddress, required: false, .hello, "address")
        joining = flags & 1 != 0
        keyed = flags & 2 != 0
        nonce = Array(UnsafeRawBufferPointer(rebasing: body[32..<48]))
    }
}

/// AUTH: the sender's proof that it knows the group key.
public struct AuthFrame: Equatable, Sendable {
    public var mac: [UInt8]
    public init(mac: [UInt8]) { self.mac = mac }
    public var body: [UInt8] { mac }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 32, .auth)
        mac = Array(body)
    }

    /// HMAC-SHA256(key, "repbroker-auth-v1" || prover site id (LE) || prover's nonce || verifier's nonce).
    public static func proof(key: [UInt8], prover: Int32, proverNonce: [UInt8], verifierNonce: [UInt8]) -> [UInt8] {
        var message = Array("repbroker-auth-v1".utf8)
        withUnsafeBytes(of: prover.littleEndian) { message.append(contentsOf: $0) }
        return HMACSHA256.authenticate(message + proverNonce + verifierNonce, key: key)
    }
}

/// MEMBERS: sites the sender knows, each with the address it listens on.
public struct MembersFrame: Equatable, Sendable {
    public struct Member: Equatable, Sendable {
        public var siteID: Int32
        public var address: String
        public init(siteID: Int32, address: String) {
            self.siteID = siteID
            self.address = address
        }
    }
    public var members: [Member]
    public init(members: [Member]) { self.members = members }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(UInt16(members.count))
        w.put(UInt16(0))
        for member in members {
            w.put(member.siteID)
            w.put(UInt16(member.address.utf8.count))
            w.put(member.address.utf8)
        }
        return w.bytes
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 4, .members, exact: false)
        let p = body.baseAddress.unsafelyUnwrapped
        let count = Int(p.le16(0))
        guard count <= Wire.maxMembers else { throw .malformed(type: .members, reason: "\(count) members, limit \(Wire.maxMembers)") }
        var offset = 4
        members = []
        for _ in 0..<count {
            guard offset + 6 <= body.count else { throw .malformed(type: .members, reason: "entry runs past the body") }
            let site = p.leInt32(offset)
            let length = Int(p.le16(offset + 4))
            let address = try decodeName(body, at: offset + 6, length: length, limit: Wire.maxAddress, required: true,
                                         .members, "address")
            guard site > 0 else { throw .malformed(type: .members, reason: "site id \(site)") }
            members.append(Member(siteID: site, address: address))
            offset += 6 + length
        }
        guard offset == body.count else { throw .malformed(type: .members, reason: "entries do not fill the body") }
    }
}

/// REMOVE_SITE: a site left the group for good.
public struct RemoveSiteFrame: Equatable, Sendable {
    public var siteID: Int32
    public init(siteID: Int32) { self.siteID = siteID }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(siteID)
        w.put(UInt32(0))
        return w.bytes
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 8, .removeSite)
        siteID = body.baseAddress.unsafelyUnwrapped.leInt32(0)
        guard siteID > 0 else { throw .malformed(type: .removeSite, reason: "site id \(siteID)") }
    }
}

/// HEARTBEAT: empty (a broker of protocol 5 sends only these and ignores a body), or a round-trip probe
/// or its echo: u8 kind (1 probe, 2 echo), 7 reserved bytes (sent as zero), u64 the prober's timestamp, which
/// the other side echoes unchanged and never interprets.
public struct HeartbeatFrame: Equatable, Sendable {
    public enum Kind: UInt8, Sendable { case probe = 1, echo = 2 }
    public var kind: Kind
    public var timestamp: UInt64
    public init(kind: Kind, timestamp: UInt64) {
        self.kind = kind
        self.timestamp = timestamp
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(UInt32(kind.rawValue))
        w.put(UInt32(0))
        w.put(timestamp)
        return w.bytes
    }

    /// nil for an empty heartbeat, and for a kind this version does not know (a later version's: ignored, as
    /// bytes past the 16th are).
    public init?(body: UnsafeRawBufferPointer) throws(WireError) {
        if body.isEmpty { return nil }
        try requireSize(body, 16, .heartbeat, exact: false)
        let start = body.baseAddress.unsafelyUnwrapped
        guard let kind = Kind(rawValue: start.load(fromByteOffset: 0, as: UInt8.self)) else { return nil }
        self.kind = kind
        timestamp = start.le64(8)
    }
}

/// GROUP_BIND: names the group index that later MESSAGE frames on this link carry.
public struct GroupBindFrame: Equatable, Sendable {
    public var group: UInt32
    public var name: String
    public init(group: UInt32, name: String) {
        self.group = group
        self.name = name
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(group)
        w.put(UInt16(name.utf8.count))
        w.put(UInt16(0))
        w.put(name.utf8)
        return w.bytes
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 8, .groupBind, exact: false)
        let p = body.baseAddress.unsafelyUnwrapped
        group = p.le32(0)
        guard (1...Wire.maxGroupIndex).contains(group) else {
            throw .malformed(type: .groupBind, reason: "group index \(group) is outside 1...\(Wire.maxGroupIndex)")
        }
        let length = Int(p.le16(4))
        guard 8 + length == body.count else {
            throw .malformed(type: .groupBind, reason: "name length \(length) does not fill the body")
        }
        name = try decodeName(body, at: 8, length: length, limit: Wire.maxGroupName, required: true, .groupBind,
                              "group name")
    }
}

/// PEER_ACK: the sending site is durable up to `lsn` in group `group` (the sender's index).
public struct PeerAckFrame: Equatable, Sendable {
    public var group: UInt32
    public var lsn: LSN
    public init(group: UInt32, lsn: LSN) {
        self.group = group
        self.lsn = lsn
    }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(group)
        w.put(lsn.file)
        w.put(lsn.offset)
        return w.bytes
    }
    /// Appends the whole frame in place: one per acknowledged record, so no allocation.
    public func append(to buffer: ByteBuffer) {
        let out = buffer.reserveForWriting(Wire.frameHeaderSize + 12)
        FrameParser.writeHeader(.peerAck, bodyLength: 12, at: out)
        out.storeLE(group, at: 8)
        out.storeLE(lsn.file, at: 12)
        out.storeLE(lsn.offset, at: 16)
        buffer.commit(Wire.frameHeaderSize + 12)
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 12, .peerAck)
        let p = body.baseAddress.unsafelyUnwrapped
        group = p.le32(0)
        lsn = LSN(file: p.le32(4), offset: p.le32(8))
    }
}

/// The classes of data a peer link schedules apart. Control frames (HELLO to HEARTBEAT, GROUP_BIND, PEER_ACK,
/// PEER_MASTER, MEMBERS, REMOVE_SITE, CREDIT, CHANNEL_RESULT) are not flow-controlled and always go first.
public enum TrafficClass: UInt8, Sendable, CaseIterable {
    /// MESSAGE frames: Berkeley DB's replication traffic.
    case replication = 0
    /// CHANNEL frames: the application's channels.
    case channel = 1

    /// The flow a data frame belongs to (nil for control frames): its class and the group index it carries.
    @inline(__always)
    public static func of(_ type: FrameType) -> TrafficClass? {
        type == .message ? .replication : type == .channel ? .channel : nil
    }
}

/// CREDIT: the receiving broker has handed on `bytes` more bytes (whole frames, headers included) of the
/// sender's flow (`group`, the sender's index, and `trafficClass`); the sender may send that many more. `acked` is
/// the sequence number of the last of the flow's frames the receiver has handled: it and every frame before it
/// are acknowledged, and the sender lets them go.
public struct CreditFrame: Equatable, Sendable {
    public static let bodySize = 16
    public var group: UInt32
    public var trafficClass: TrafficClass
    public var bytes: UInt32
    public var acked: UInt32
    public init(group: UInt32, trafficClass: TrafficClass, bytes: UInt32, acked: UInt32) {
        self.group = group
        self.trafficClass = trafficClass
        self.bytes = bytes
        self.acked = acked
    }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(group)
        w.put(trafficClass.rawValue)
        w.put([UInt8](repeating: 0, count: 3))
        w.put(bytes)
        w.put(acked)
        return w.bytes
    }
    /// Appends the whole frame in place (credits go back all the time under load: no allocation).
    public func append(to buffer: ByteBuffer) {
        let out = buffer.reserveForWriting(Wire.frameHeaderSize + Self.bodySize)
        FrameParser.writeHeader(.credit, bodyLength: Self.bodySize, at: out)
        out.storeLE(group, at: 8)
        out.storeLE(UInt32(trafficClass.rawValue), at: 12)
        out.storeLE(bytes, at: 16)
        out.storeLE(acked, at: 20)
        buffer.commit(Wire.frameHeaderSize + Self.bodySize)
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, Self.bodySize, .credit)
        let p = body.baseAddress.unsafelyUnwrapped
        group = p.le32(0)
        guard (1...Wire.maxGroupIndex).contains(group) else {
            throw .malformed(type: .credit, reason: "group index \(group) is outside 1...\(Wire.maxGroupIndex)")
        }
        guard let trafficClass = TrafficClass(rawValue: body[4]) else {
            throw .malformed(type: .credit, reason: "unknown traffic class \(body[4])")
        }
        guard body[5] == 0, body[6] == 0, body[7] == 0 else {
            throw .malformed(type: .credit, reason: "reserved bytes are not zero")
        }
        self.trafficClass = trafficClass
        bytes = p.le32(8)
        acked = p.le32(12)
        guard bytes > 0 else { throw .malformed(type: .credit, reason: "a credit of 0 bytes") }
    }
}

/// PEER_RECEIVER: whether a client holds the receiver role in group `group` (the sender's index) at the sending
/// site. Its peers' receivers in that group hear of the site as up only while one does (a site event).
public struct PeerReceiverFrame: Equatable, Sendable {
    public static let bodySize = 8
    public var group: UInt32
    public var present: Bool
    public init(group: UInt32, present: Bool) {
        self.group = group
        self.present = present
    }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(group)
        w.put(UInt16(present ? 1 : 0))
        w.put(UInt16(0))
        return w.bytes
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, Self.bodySize, .peerReceiver)
        let p = body.baseAddress.unsafelyUnwrapped
        group = p.le32(0)
        guard (1...Wire.maxGroupIndex).contains(group) else {
            throw .malformed(type: .peerReceiver, reason: "group index \(group) is outside 1...\(Wire.maxGroupIndex)")
        }
        let flag = p.le16(4)
        guard flag <= 1 else { throw .malformed(type: .peerReceiver, reason: "present is \(flag), not 0 or 1") }
        present = flag == 1
    }
}
