// What crosses the line between the core and its shell: connection ids, the actions the core asks for, the
// settings it runs with, and the randomness it is given. The core makes no system call and reads no clock;
// these are how it asks for one and is told of one.
import BrokerWire

/// A connection as the core knows it: local client, peer link or dial in progress.
public typealias ConnectionID = UInt32

/// What the core asks its shell to do. The hot path's needs (flushing connections with new output, ringing a
/// ring's doorbell) do not come this way: the shell reads them from `Core.takeDirty` and `Core.takeRoomBells`.
public enum CoreAction: Equatable, Sendable {
    /// Write `lastWords` (an ERROR frame, or nothing) if the socket takes them at once, then close it. The core
    /// has forgotten the connection.
    case close(ConnectionID, lastWords: [UInt8])
    /// Stop or resume reading the connection (backpressure): the kernel holds what the other side sends.
    case setReading(ConnectionID, paused: Bool)
    /// A client hung up with records left in its ring: its socket is done (take it out of epoll), its ring is
    /// still drained; `close` follows once it is empty.
    case stopWatching(ConnectionID)
    /// Send WELCOME to a client as its first frame; with `ringBytes` above 0, make its rings (a segment and
    /// doorbells), attach them to the WELCOME, and call `Core.welcomed` with their memory. Without rings, or
    /// when they cannot be made, send it with ring_bytes 0 and call `Core.welcomed(…, rings: nil)`.
    case welcome(ConnectionID, WelcomeFrame)
    /// Dial a peer site at `address` (HOST:PORT; a name is resolved first, off the loop), then `Core.openPeer`.
    case dial(site: Int32, address: String)
    /// Dial a --join target (index into the configured list).
    case dialJoin(index: Int, address: String)
    /// Store what this broker knows of the group (atomically).
    case saveMembership([MemberRecord])
    /// Clients left: hand freed memory back to the system.
    case trimMemory
    /// Stop the broker: it cannot go on (a duplicate site id).
    case fatal(String)
}

/// One line of the membership file.
public struct MemberRecord: Codable, Equatable, Sendable {
    public var site_id: Int32
    public var address: String
    public var origin: PeerOrigin
    public var removed: Bool

    public init(site_id: Int32, address: String, origin: PeerOrigin, removed: Bool) {
        self.site_id = site_id
        self.address = address
        self.origin = origin
        self.removed = removed
    }
}

/// The settings the core decides with (the shell's own, like socket paths, stay in the shell).
public struct CoreConfig: Sendable {
    public var siteID: Int32
    /// Configured peers: site id and address (HOST:PORT).
    public var peers: [(siteID: Int32, address: String)] = []
    public var join: [String] = []
    /// The --listen address, when there is one (a wildcard one is learned: see `Core.learnLocalAddress`).
    public var listen: String?
    public var advertise: String?
    public var groupKey: [UInt8]?
    public var heartbeatMilliseconds = 1000
    public var peerQueueBytes = 64 << 20
    public var flowWindowBytes = Int(Wire.defaultFlowWindow)
    public var maxMessageBytes = Wire.defaultMaxMessage
    public var inboundQueueBytes = 4 << 20
    public var clientQueueBytes = 64 << 20
    public var maxRingBytes = 64 << 20
    public var maxClients = 4096
    public var maxGroups = 1024
    public var groupGraceMilliseconds = 60_000
    /// Fixed defects put back on purpose: empty in every real broker (see `CoreMutation`).
    public var mutations: Set<CoreMutation> = []

    public init(siteID: Int32) { self.siteID = siteID }

    /// Every setting at its default (the site id aside).
    public static let defaults = CoreConfig(siteID: 0)
}

/// SplitMix64: a small seeded generator, the same sequence on every machine (the simulator's runs and the
/// chaos schedules draw from it).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Randomness given to the core: xorshift64* from a seed (the shell seeds it from the system, the simulator
/// from its run's seed, so a run replays).
public struct CoreRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }

    public mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}

/// Why the core refused a new local client before its REGISTER.
public struct ClientRefusal: Error, Sendable {
    /// The ERROR frame to write before closing.
    public let lastWords: [UInt8]
}

/// Fixed defects the simulator's own tests put back, one at a time, to show that an invariant catches each
/// (FoundationDB's BUGGIFY turned round: not a fault of the world, a fault of the broker). Never set outside
/// those tests.
public enum CoreMutation: String, Sendable, CaseIterable {
    /// Issue 16: a producer that registers while its group is congested is not paused.
    case lateProducerNotPaused
    /// Issue 16: a site whose receiver left stays up for its peers (PEER_RECEIVER absent is never sent).
    case receiverLossNotAnnounced
    /// A message dropped at a full peer queue is reported queued (SEND_RESULT 0).
    case dropReportedQueued
}
