// Swift mirror of ipc/include/repbroker_frames.h. BrokerWireTests checks every value against the C header.

/// Protocol-wide constants and limits.
public enum Wire {
    /// The newest protocol version this build speaks, and the oldest (the one before it): peers and clients
    /// of either link, at the highest version both speak (PROTOCOL.md, "Versioning").
    public static let protocolVersion: UInt16 = 6
    public static let oldestProtocolVersion: UInt16 = 5
    public static var protocolVersions: ClosedRange<UInt16> { oldestProtocolVersion...protocolVersion }

    /// The highest version both `theirs` and this build speak; nil when they share none.
    public static func negotiate(_ theirs: ClosedRange<UInt16>, ours: ClosedRange<UInt16> = protocolVersions) -> UInt16? {
        let highest = min(theirs.upperBound, ours.upperBound)
        return highest >= max(theirs.lowerBound, ours.lowerBound) ? highest : nil
    }

    /// "5" or "5 ... 6", for reasons.
    public static func describe(_ versions: ClosedRange<UInt16>) -> String {
        versions.count == 1 ? "\(versions.lowerBound)" : "\(versions.lowerBound) ... \(versions.upperBound)"
    }
    public static let frameMagic: UInt8 = 0xB7
    public static let peerHelloMagic: UInt32 = 0x4C50_4252
    public static let frameHeaderSize = 8
    public static let messageHeaderSize = 40
    /// Largest body of any frame but MESSAGE.
    public static let maxControlBody = 65_536
    public static let defaultMaxMessage = 64 << 20
    public static let maxGroupName = 64
    public static let maxClientName = 64
    public static let maxAddress = 255
    public static let maxMembers = 1024
    /// Group indexes on a peer link are 1 ... maxGroupIndex (a broker reuses the indexes of released groups).
    public static let maxGroupIndex: UInt32 = 65_536
    public static let defaultGroup = "default"
    /// Bytes of data frames a broker lets a peer send per flow (group and class) before credit returns:
    /// the default it announces in HELLO, and the least it may announce.
    public static let defaultFlowWindow: UInt32 = 512 << 10
    public static let minFlowWindow: UInt32 = 64 << 10
}

/// Frame types (`RB_FRAME_*`).
public enum FrameType: UInt8, Sendable, CustomStringConvertible {
    case register = 0x01
    case welcome = 0x02
    case role = 0x03
    case sendResult = 0x04
    case error = 0x05
    case siteEvent = 0x06
    case ack = 0x07
    case ackPolicy = 0x08
    case master = 0x09
    case subscribe = 0x0A
    case message = 0x10
    case channel = 0x11
    case channelResult = 0x12
    case hello = 0x20
    case activate = 0x21
    case heartbeat = 0x22
    case groupBind = 0x23
    case peerAck = 0x24
    case peerMaster = 0x25
    case members = 0x26
    case removeSite = 0x27
    case auth = 0x28
    case credit = 0x29
    case peerReceiver = 0x2A

    public var description: String {
        switch self {
        case .register: return "REGISTER"
        case .welcome: return "WELCOME"
        case .role: return "ROLE"
        case .sendResult: return "SEND_RESULT"
        case .error: return "ERROR"
        case .siteEvent: return "SITE_EVENT"
        case .ack: return "ACK"
        case .ackPolicy: return "ACK_POLICY"
        case .master: return "MASTER"
        case .subscribe: return "SUBSCRIBE"
        case .channel: return "CHANNEL"
        case .channelResult: return "CHANNEL_RESULT"
        case .message: return "MESSAGE"
        case .hello: return "HELLO"
        case .activate: return "ACTIVATE"
        case .heartbeat: return "HEARTBEAT"
        case .groupBind: return "GROUP_BIND"
        case .peerAck: return "PEER_ACK"
        case .peerMaster: return "PEER_MASTER"
        case .members: return "MEMBERS"
        case .removeSite: return "REMOVE_SITE"
        case .auth: return "AUTH"
        case .credit: return "CREDIT"
        case .peerReceiver: return "PEER_RECEIVER"
        }
    }
}

/// Special environment ids of Berkeley DB.
public enum SiteID {
    public static let broadcast: Int32 = -1
    public static let invalid: Int32 = -2
    /// The site most recently announced as the group's master (resolved by the broker at send time).
    public static let master: Int32 = -3
}

/// What a channel frame is (`RB_CHANNEL_*`).
public enum ChannelKind: UInt16, Sendable {
    case message = 0
    case request = 1
    case reply = 2
}

/// Outcome of a channel send or request (`RB_CHANNEL_*` status).
public enum ChannelStatus: UInt32, Sendable {
    case delivered = 0
    case noSubscriber = 1
    case noMaster = 2
    case unroutable = 3
    case queueFull = 4
    /// Sent by a client to its broker when one of its requests got no reply in time (for stats).
    case timedOut = 5
}

/// `DB_REP_*` send flags, with db.h's values.
public struct RepFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public static var anywhere: RepFlags { RepFlags(rawValue: 0x1) }
    @inlinable public static var noBuffer: RepFlags { RepFlags(rawValue: 0x2) }
    @inlinable public static var permanent: RepFlags { RepFlags(rawValue: 0x4) }
    @inlinable public static var rerequest: RepFlags { RepFlags(rawValue: 0x8) }
    @inlinable public static var known: RepFlags { RepFlags(rawValue: 0xF) }

    static let names: [(String, RepFlags)] = [
        ("anywhere", .anywhere), ("nobuffer", .noBuffer), ("permanent", .permanent), ("rerequest", .rerequest),
    ]

    /// Parses a comma-separated list such as "permanent,nobuffer".
    public static func parse(_ text: String) -> Result<RepFlags, ParseError> {
        var flags: RepFlags = []
        for word in text.split(separator: ",") where !word.isEmpty {
            let name = word.filter { $0 != " " }.lowercased()
            guard let flag = names.first(where: { $0.0 == name })?.1 else { return .failure(ParseError(word: name)) }
            flags.insert(flag)
        }
        return .success(flags)
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let word: String
        public var description: String { "unknown flag '\(word)' (known: anywhere, nobuffer, permanent, rerequest)" }
    }

    public var names: [String] { Self.names.filter { contains($0.1) }.map(\.0) }
}

/// Roles a client asks for at registration (`RB_ROLE_*` bits).
public struct ClientRoles: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let sender = ClientRoles(rawValue: 0x1)
    public static let receiver = ClientRoles(rawValue: 0x2)
    /// Every role bit of protocol version 1; others are a bad frame.
    public static let known: ClientRoles = [.sender, .receiver]
}

/// Whether a client holds its group's receiver role (`RB_ROLE_STATE_*`).
public enum RoleState: UInt16, Sendable {
    case none = 0
    case receiver = 1
    case standby = 2
}

/// Outcome of a send that asked for one (`RB_SEND_*`).
public enum SendStatus: UInt32, Sendable {
    /// Queued for every destination (and, for a PERMANENT message with an LSN, acknowledged as asked).
    case ok = 0
    /// Queued nowhere: a destination's queue was full (refused, or dropped and counted).
    case queueFull = 1
    case unroutable = 2
    case ackTimeout = 3
    /// A broadcast queued for some sites and dropped (counted) at the others, whose queues were full.
    case partlyQueued = 4
}

/// How many sites must acknowledge a PERMANENT message before its send succeeds (`RB_ACK_*`).
public enum AckPolicy: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case one = 1
    /// A majority of the group's sites, the sending site's own counted.
    case quorum = 2
    case all = 3

    public init?(name: String) {
        guard let policy = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = policy
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .one: return "one"
        case .quorum: return "quorum"
        case .all: return "all"
        }
    }

    /// Acks needed from other sites in a group of `sites` sites (the sender's own counts for itself).
    public func requiredAcks(sites: Int) -> Int {
        switch self {
        case .none: return 0
        case .one: return min(1, sites - 1)
        case .quorum: return sites / 2
        case .all: return sites - 1
        }
    }
}

/// Reason carried by an ERROR frame (`RB_ERR_*`).
public enum ErrorCode: UInt32, Sendable {
    case version = 1
    case badFrame = 2
    case tooLarge = 3
    case duplicateLink = 4
    case unknownSite = 5
    case siteConflict = 6
    case notRegistered = 7
    case shutdown = 8
    case auth = 9
    case notAllowed = 10
    /// A local client over --max-clients.
    case clientLimit = 11
    /// A REGISTER for a new group over --max-groups.
    case groupLimit = 12
    /// A peer link's TLS: one end has TLS and the other not, or a certificate does not name the site (or does
    /// not match its pin).
    case tls = 13
}

/// A Berkeley DB log sequence number.
public struct LSN: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var file: UInt32
    public var offset: UInt32
    @inlinable public init(file: UInt32, offset: UInt32) {
        self.file = file
        self.offset = offset
    }
    @inlinable public static var zero: LSN { LSN(file: 0, offset: 0) }
    public static func < (a: LSN, b: LSN) -> Bool { (a.file, a.offset) < (b.file, b.offset) }
    public var description: String { "\(file)/\(offset)" }
}
