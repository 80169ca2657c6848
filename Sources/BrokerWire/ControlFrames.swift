// Bodies of every frame but MESSAGE: encoded to byte arrays (off the hot path) and decoded with every
// length checked against the body and the named limits.

/// A name field: non-empty where required, within its limit, valid UTF-8.
func decodeName(
    _ body: UnsafeRawBufferPointer, at offset: Int, length: Int, limit: Int, required: Bool, _ type: FrameType,
    _ what: String
) throws(WireError) -> String {
    guard length <= limit else { throw .malformed(type: type, reason: "\(what) of \(length) bytes, limit \(limit)") }
    guard !required || length > 0 else { throw .malformed(type: type, reason: "empty \(what)") }
    guard offset + length <= body.count else { throw .malformed(type: type, reason: "\(what) runs past the body") }
    let bytes = UnsafeRawBufferPointer(rebasing: body[offset..<offset + length])
    guard let text = String(validating: bytes, as: UTF8.self) else {
        throw .malformed(type: type, reason: "\(what) is not UTF-8")
    }
    return text
}

func requireSize(_ body: UnsafeRawBufferPointer, _ size: Int, _ type: FrameType, exact: Bool = true) throws(WireError) {
    let fits = exact ? body.count == size : body.count >= size
    guard fits, body.baseAddress != nil || size == 0 else {
        throw .malformed(type: type, reason: "body of \(body.count) bytes, expected \(exact ? "" : "at least ")\(size)")
    }
}

/// REGISTER: the first frame a client sends.
public struct RegisterFrame: Equatable, Sendable {
    public var version: UInt16
    public var roles: ClientRoles
    public var pid: Int32
    public var group: String
    public var name: String
    /// Each shared-memory ring's size wanted; 0 for the socket only.
    public var ringBytes: UInt32

    public init(version: UInt16 = Wire.protocolVersion, roles: ClientRoles, pid: Int32, group: String, name: String,
                ringBytes: UInt32 = 0) {
        self.version = version
        self.roles = roles
        self.pid = pid
        self.group = group
        self.name = name
        self.ringBytes = ringBytes
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(version)
        w.put(roles.rawValue)
        w.put(pid)
        w.put(UInt16(group.utf8.count))
        w.put(UInt16(name.utf8.count))
        w.put(ringBytes)
        w.put(group.utf8)
        w.put(name.utf8)
        return w.bytes
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 16, .register, exact: false)
        let p = body.baseAddress.unsafelyUnwrapped
        version = p.le16(0)
        roles = ClientRoles(rawValue: p.le16(2))
        pid = p.leInt32(4)
        let groupLength = Int(p.le16(8))
        let nameLength = Int(p.le16(10))
        ringBytes = p.le32(12)
        guard 16 + groupLength + nameLength == body.count else {
            throw .malformed(type: .register, reason: "string lengths do not fill the body")
        }
        group = try decodeName(body, at: 16, length: groupLength, limit: Wire.maxGroupName, required: true,
                               .register, "group name")
        name = try decodeName(body, at: 16 + groupLength, length: nameLength, limit: Wire.maxClientName,
                              required: false, .register, "client name")
    }
}

/// WELCOME: the broker's answer to REGISTER.
public struct WelcomeFrame: Equatable, Sendable {
    public var version: UInt16
    public var roleState: RoleState
    public var siteID: Int32
    public var clientID: UInt32
    /// Each shared-memory ring's size granted (the segment and doorbells come attached); 0: socket only.
    public var ringBytes: UInt32
    public var maxMessage: UInt64

    public init(version: UInt16 = Wire.protocolVersion, roleState: RoleState, siteID: Int32, clientID: UInt32,
                ringBytes: UInt32 = 0, maxMessage: UInt64) {
        self.version = version
        self.roleState = roleState
        self.siteID = siteID
        self.clientID = clientID
        self.ringBytes = ringBytes
        self.maxMessage = maxMessage
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(version)
        w.put(roleState.rawValue)
        w.put(siteID)
        w.put(clientID)
        w.put(ringBytes)
        w.put(maxMessage)
        return w.bytes
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 24, .welcome)
        let p = body.baseAddress.unsafelyUnwrapped
        version = p.le16(0)
        guard let state = RoleState(rawValue: p.le16(2)) else {
            throw .malformed(type: .welcome, reason: "unknown role state \(p.le16(2))")
        }
        roleState = state
        siteID = p.leInt32(4)
        clientID = p.le32(8)
        ringBytes = p.le32(12)
        maxMessage = p.le64(16)
    }
}

/// ROLE: the broker hands a standby client the receiver role.
public struct RoleFrame: Equatable, Sendable {
    public var roleState: RoleState
    public init(roleState: RoleState) { self.roleState = roleState }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(roleState.rawValue)
        w.put(UInt16(0))
        return w.bytes
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 4, .role)
        let raw = body.baseAddress.unsafelyUnwrapped.le16(0)
        guard let state = RoleState(rawValue: raw) else {
            throw .malformed(type: .role, reason: "unknown role state \(raw)")
        }
        roleState = state
    }
}

/// SEND_RESULT: the outcome of a MESSAGE whose sequence was nonzero.
public struct SendResultFrame: Equatable, Sendable {
    public var sequence: UInt64
    public var status: SendStatus
    public init(sequence: UInt64, status: SendStatus) {
        self.sequence = sequence
        self.status = status
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(sequence)
        w.put(status.rawValue)
        w.put(UInt32(0))
        return w.bytes
    }

    /// Appends the whole frame in place (no allocation): the broker sends one per PERMANENT message.
    public func append(to buffer: ByteBuffer) {
        let out = buffer.reserveForWriting(Wire.frameHeaderSize + 16)
        FrameParser.writeHeader(.sendResult, bodyLength: 16, at: out)
        out.storeLE(sequence, at: 8)
        out.storeLE(status.rawValue, at: 16)
        out.storeLE(UInt32(0), at: 20)
        buffer.commit(Wire.frameHeaderSize + 16)
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 16, .sendResult)
        let p = body.baseAddress.unsafelyUnwrapped
        sequence = p.le64(0)
        guard let status = SendStatus(rawValue: p.le32(8)) else {
            throw .malformed(type: .sendResult, reason: "unknown status \(p.le32(8))")
        }
        self.status = status
    }
}

/// ERROR: why the sender is about to close the connection.
public struct ErrorFrame: Equatable, Sendable, CustomStringConvertible {
    public var code: UInt32
    public var reason: String
    public init(code: ErrorCode, reason: String) {
        self.code = code.rawValue
        self.reason = reason
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(code)
        w.put(reason.utf8.prefix(Wire.maxControlBody - 4))
        return w.bytes
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 4, .error, exact: false)
        code = body.baseAddress.unsafelyUnwrapped.le32(0)
        reason = String(decoding: UnsafeRawBufferPointer(rebasing: body[4...]), as: UTF8.self)
    }

    public var description: String {
        let name = ErrorCode(rawValue: code).map { "\($0)" } ?? "code \(code)"
        return "\(name): \(reason)"
    }
}

/// HELLO: the first frame on a peer connection, both ways.
public struct HelloFrame: Equatable, Sendable {
    public var magic: UInt32
    public var version: UInt16
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

    public init(magic: UInt32 = Wire.peerHelloMagic, version: UInt16 = Wire.protocolVersion, siteID: Int32,
                incarnation: UInt64, address: String = "", joining: Bool = false, keyed: Bool = false,
                nonce: [UInt8] = [UInt8](repeating: 0, count: 16)) {
        self.magic = magic
        self.version = version
        self.siteID = siteID
        self.incarnation = incarnation
        self.address = address
        self.joining = joining
        self.keyed = keyed
        self.nonce = nonce
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(magic)
        w.put(version)
        w.put(UInt16(0))
        w.put(siteID)
        w.put(UInt32(0))
        w.put(incarnation)
        w.put(UInt16(address.utf8.count))
        w.put(UInt16((joining ? 1 : 0) | (keyed ? 2 : 0)))
        w.put(UInt32(0))
        w.put(nonce.prefix(16) + [UInt8](repeating: 0, count: max(0, 16 - nonce.count)))
        w.put(address.utf8)
        return w.bytes
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 48, .hello, exact: false)
        let p = body.baseAddress.unsafelyUnwrapped
        magic = p.le32(0)
        version = p.le16(4)
        siteID = p.leInt32(8)
        incarnation = p.le64(16)
        let length = Int(p.le16(24))
        let flags = p.le16(26)
        guard magic == Wire.peerHelloMagic else {
            throw .malformed(type: .hello, reason: "bad magic 0x\(String(magic, radix: 16))")
        }
        guard flags & ~3 == 0 else { throw .malformed(type: .hello, reason: "unknown flags \(flags)") }
        guard 48 + length == body.count else { throw .malformed(type: .hello, reason: "address length does not fill the body") }
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
        let length = Int(p.le16(4))
        guard 8 + length == body.count else {
            throw .malformed(type: .groupBind, reason: "name length \(length) does not fill the body")
        }
        name = try decodeName(body, at: 8, length: length, limit: Wire.maxGroupName, required: true, .groupBind,
                              "group name")
    }
}

/// The small fixed-size frames of acks, masters and site events: two 32-bit words, or three for PEER_ACK.
public struct SiteEventFrame: Equatable, Sendable {
    public var siteID: Int32
    public var up: Bool
    public init(siteID: Int32, up: Bool) {
        self.siteID = siteID
        self.up = up
    }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(siteID)
        w.put(UInt16(up ? 1 : 0))
        w.put(UInt16(0))
        return w.bytes
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 8, .siteEvent)
        let p = body.baseAddress.unsafelyUnwrapped
        siteID = p.leInt32(0)
        guard p.le16(4) <= 1 else { throw .malformed(type: .siteEvent, reason: "state \(p.le16(4)) is not 0 or 1") }
        up = p.le16(4) == 1
    }
}

/// ACK (client to broker): this site is durable up to `lsn`.
public struct AckFrame: Equatable, Sendable {
    public var lsn: LSN
    public init(lsn: LSN) { self.lsn = lsn }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(lsn.file)
        w.put(lsn.offset)
        return w.bytes
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 8, .ack)
        let p = body.baseAddress.unsafelyUnwrapped
        lsn = LSN(file: p.le32(0), offset: p.le32(4))
    }
}

/// ACK_POLICY: what a client's PERMANENT sends wait for.
public struct AckPolicyFrame: Equatable, Sendable {
    public var policy: AckPolicy
    public var timeoutMilliseconds: UInt32
    public init(policy: AckPolicy, timeoutMilliseconds: UInt32) {
        self.policy = policy
        self.timeoutMilliseconds = timeoutMilliseconds
    }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(policy.rawValue)
        w.put(UInt16(0))
        w.put(timeoutMilliseconds)
        return w.bytes
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 8, .ackPolicy)
        let p = body.baseAddress.unsafelyUnwrapped
        guard let policy = AckPolicy(rawValue: p.le16(0)) else {
            throw .malformed(type: .ackPolicy, reason: "unknown policy \(p.le16(0))")
        }
        self.policy = policy
        timeoutMilliseconds = p.le32(4)
    }
}

/// MASTER (client to broker) and PEER_MASTER (with a group index): the group's master site, 0 for none.
public struct MasterFrame: Equatable, Sendable {
    public var group: UInt32
    public var siteID: Int32
    public init(group: UInt32 = 0, siteID: Int32) {
        self.group = group
        self.siteID = siteID
    }
    /// MASTER body (site id, reserved).
    public var localBody: [UInt8] {
        var w = ByteWriter()
        w.put(siteID)
        w.put(UInt32(0))
        return w.bytes
    }
    /// PEER_MASTER body (group, site id).
    public var peerBody: [UInt8] {
        var w = ByteWriter()
        w.put(group)
        w.put(siteID)
        return w.bytes
    }
    public init(localBody body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 8, .master)
        group = 0
        siteID = body.baseAddress.unsafelyUnwrapped.leInt32(0)
        guard siteID >= 0 else { throw .malformed(type: .master, reason: "master site id \(siteID)") }
    }
    public init(peerBody body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 8, .peerMaster)
        let p = body.baseAddress.unsafelyUnwrapped
        group = p.le32(0)
        siteID = p.leInt32(4)
        guard siteID >= 0 else { throw .malformed(type: .peerMaster, reason: "master site id \(siteID)") }
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
