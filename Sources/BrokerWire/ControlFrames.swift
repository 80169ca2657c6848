// Bodies of the local socket's control frames (REGISTER, WELCOME, ROLE, SEND_RESULT, ERROR, SITE_EVENT, ACK,
// ACK_POLICY, MASTER): encoded to byte arrays (off the hot path) and decoded with every length checked against
// the body and the named limits. Peer-link frames are in PeerFrames.swift, channel frames in ChannelFrames.swift.

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
    /// The version field of a REGISTER body, read before anything else (a client of another version may lay
    /// the rest out differently); nil when the body is too short to hold it.
    public static func version(of body: UnsafeRawBufferPointer) -> UInt16? {
        body.count >= 2 ? body.baseAddress.unsafelyUnwrapped.le16(0) : nil
    }

    /// The versions the client speaks, read before anything else: `version` is the newest; from version 6 on
    /// the body's fixed part has 4 more bytes, the oldest version and 2 reserved (a broker of protocol 5 reads
    /// the version first and refuses a client that says 6, which then registers again as 5). nil when the
    /// body is too short.
    public static func versions(of body: UnsafeRawBufferPointer) -> ClosedRange<UInt16>? {
        guard let newest = version(of: body) else { return nil }
        guard newest >= 6 else { return newest...newest }
        guard body.count >= 20 else { return nil }
        let oldest = body.baseAddress.unsafelyUnwrapped.le16(16)
        return min(oldest, newest)...newest
    }

    /// The newest version the client speaks (the version of this REGISTER's layout).
    public var version: UInt16
    /// The oldest (version 6 and later; a version 5 REGISTER speaks 5 alone).
    public var minVersion: UInt16
    public var versions: ClosedRange<UInt16> { min(minVersion, version)...version }
    public var roles: ClientRoles
    public var pid: Int32
    public var group: String
    public var name: String
    /// Each shared-memory ring's size wanted; 0 for the socket only.
    public var ringBytes: UInt32

    public init(versions: ClosedRange<UInt16> = Wire.protocolVersions, roles: ClientRoles, pid: Int32, group: String,
                name: String, ringBytes: UInt32 = 0) {
        version = versions.upperBound
        minVersion = versions.upperBound >= 6 ? versions.lowerBound : versions.upperBound
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
        if version >= 6 {
            w.put(minVersion)
            w.put(UInt16(0))
        }
        w.put(group.utf8)
        w.put(name.utf8)
        return w.bytes
    }

    /// The fixed part of the body before the names: 16 bytes in version 5, 20 from version 6.
    static func fixedSize(version: UInt16) -> Int { version >= 6 ? 20 : 16 }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 16, .register, exact: false)
        let p = body.baseAddress.unsafelyUnwrapped
        version = p.le16(0)
        let fixed = Self.fixedSize(version: version)
        try requireSize(body, fixed, .register, exact: false)
        minVersion = version >= 6 ? p.le16(16) : version
        guard minVersion <= version else {
            throw .malformed(type: .register, reason: "oldest version \(minVersion) is newer than \(version)")
        }
        roles = ClientRoles(rawValue: p.le16(2))
        guard roles.isSubset(of: .known) else {
            throw .malformed(type: .register, reason: "unknown role bits 0x\(String(roles.rawValue, radix: 16))")
        }
        pid = p.leInt32(4)
        let groupLength = Int(p.le16(8))
        let nameLength = Int(p.le16(10))
        ringBytes = p.le32(12)
        guard fixed + groupLength + nameLength == body.count else {
            throw .malformed(type: .register, reason: "string lengths do not fill the body")
        }
        group = try decodeName(body, at: fixed, length: groupLength, limit: Wire.maxGroupName, required: true,
                               .register, "group name")
        name = try decodeName(body, at: fixed + groupLength, length: nameLength, limit: Wire.maxClientName,
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

/// SEND_RESULT: the outcome of a MESSAGE whose sequence was nonzero. With status ack timeout it names the
/// sites that acknowledged the LSN in time and those that did not.
public struct SendResultFrame: Equatable, Sendable {
    public var sequence: UInt64
    public var status: SendStatus
    public var acked: [Int32]
    public var missing: [Int32]
    public init(sequence: UInt64, status: SendStatus, acked: [Int32] = [], missing: [Int32] = []) {
        self.sequence = sequence
        self.status = status
        self.acked = acked
        self.missing = missing
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(sequence)
        w.put(status.rawValue)
        w.put(UInt16(acked.count))
        w.put(UInt16(missing.count))
        for site in acked + missing { w.put(site) }
        return w.bytes
    }

    /// Appends the whole frame in place (no allocation): the broker sends one per PERMANENT message. Without
    /// site lists (the caller writes them with `body`).
    public func append(to buffer: ByteBuffer) {
        let out = buffer.reserveForWriting(Wire.frameHeaderSize + 16)
        FrameParser.writeHeader(.sendResult, bodyLength: 16, at: out)
        out.storeLE(sequence, at: 8)
        out.storeLE(status.rawValue, at: 16)
        out.storeLE(UInt32(0), at: 20)
        buffer.commit(Wire.frameHeaderSize + 16)
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 16, .sendResult, exact: false)
        let p = body.baseAddress.unsafelyUnwrapped
        sequence = p.le64(0)
        guard let status = SendStatus(rawValue: p.le32(8)) else {
            throw .malformed(type: .sendResult, reason: "unknown status \(p.le32(8))")
        }
        self.status = status
        let ackedCount = Int(p.le16(12))
        let missingCount = Int(p.le16(14))
        guard ackedCount + missingCount == 0 || status == .ackTimeout else {
            throw .malformed(type: .sendResult, reason: "site lists with status \(status.rawValue)")
        }
        guard ackedCount <= Wire.maxMembers, missingCount <= Wire.maxMembers,
              body.count == 16 + 4 * (ackedCount + missingCount) else {
            throw .malformed(type: .sendResult, reason: "\(ackedCount) + \(missingCount) sites do not fill a body of \(body.count)")
        }
        let sites = (0..<(ackedCount + missingCount)).map { p.leInt32(16 + 4 * $0) }
        acked = Array(sites[..<ackedCount])
        missing = Array(sites[ackedCount...])
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

/// ACK (client to broker): this site has made durable, up to `lsn`, the log of `siteID` (the source of the
/// message whose DB_REP_ISPERM it reports). The broker tells that site alone.
public struct AckFrame: Equatable, Sendable {
    public var lsn: LSN
    public var siteID: Int32
    public init(lsn: LSN, siteID: Int32) {
        self.lsn = lsn
        self.siteID = siteID
    }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(lsn.file)
        w.put(lsn.offset)
        w.put(UInt32(bitPattern: siteID))
        w.put(UInt32(0))
        return w.bytes
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 16, .ack)
        let p = body.baseAddress.unsafelyUnwrapped
        lsn = LSN(file: p.le32(0), offset: p.le32(4))
        siteID = Int32(bitPattern: p.le32(8))
        guard siteID > 0 else { throw .malformed(type: .ack, reason: "site id \(siteID) is not a site") }
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
