// Public types of the client module: options, received messages, errors.
@_exported import struct BrokerWire.LSN
@_exported import struct BrokerWire.RepFlags
@_exported import struct BrokerWire.ClientRoles
@_exported import enum BrokerWire.SiteID
@_exported import enum BrokerWire.AckPolicy

/// How a client hands messages to the broker.
public enum ClientTransport: String, Sendable, CaseIterable {
    /// Frames over the Unix socket.
    case unixSocket = "uds"
    /// Two shared-memory rings (the socket stays for control, liveness and messages too large for a ring);
    /// fails when the broker offers none.
    case sharedMemory = "shm"
    /// Rings when the broker offers them, the socket otherwise.
    case automatic = "auto"
}

/// How a client connects and what it registers as.
public struct BrokerClientOptions: Sendable {
    /// The broker's local socket.
    public var socketPath: String
    /// The replication group (one replicated environment).
    public var group: String = "default"
    /// A name shown in `repbroker stats`.
    public var name: String = ""
    /// `.sender`, `.receiver` or both. Only one client per group holds the receiver role; others stand by.
    public var roles: ClientRoles = [.sender]
    /// How long a PERMANENT send waits for the broker's verdict (at least the ack timeout plus 2 s).
    public var sendTimeout: Double = 5
    /// How many sites a PERMANENT send with an LSN waits for: none, one, quorum (a majority of the group's
    /// sites, this one counted) or all.
    public var ackPolicy: AckPolicy = .none
    /// How long a PERMANENT send waits for its acks before it fails (Berkeley DB then flushes its log).
    public var ackTimeout: Double = 1
    /// Reconnect and re-register by itself after the broker goes away.
    public var reconnect = true
    /// Without rings: bytes of received messages held before the reader thread stops reading (the broker then
    /// queues, bounded), unless a thread waits for a reply.
    public var inboxLimitBytes = 64 << 20
    /// Socket, shared-memory rings, or rings when offered.
    public var transport: ClientTransport = .automatic
    /// Each ring's size asked for (the broker rounds to a power of two within its limit). A message larger
    /// than a quarter of the ring travels through it in parts.
    public var ringBytes = 1 << 20
    /// How long (seconds) a receive with nothing to take spins on the ring before it sleeps: while traffic
    /// flows the next message usually comes within microseconds, and a sleep costs a wake-up on both sides.
    /// 0 sleeps at once (best when receiver threads outnumber the cores).
    public var receiveSpin: Double = 0.000_02

    public init(socketPath: String, group: String = "default", name: String = "", roles: ClientRoles = [.sender]) {
        self.socketPath = socketPath
        self.group = group
        self.name = name
        self.roles = roles
    }
}

/// One replication message delivered to the receiver.
public struct ReceivedMessage: Sendable, Equatable {
    /// The site id (Berkeley DB environment id) of the site that sent it.
    public let source: Int32
    public let control: [UInt8]
    public let rec: [UInt8]
    public let lsn: LSN
    public let flags: RepFlags
}

/// A received message seen in place: its bytes are valid only during the call that hands it over.
public struct MessageView {
    public let source: Int32
    public let control: UnsafeRawBufferPointer
    public let rec: UnsafeRawBufferPointer
    public let lsn: LSN
    public let flags: RepFlags
}

/// An application message received on a channel this client subscribed to.
public struct ChannelMessage: Sendable, Equatable {
    public let channel: String
    /// The site that sent it.
    public let source: Int32
    public let payload: [UInt8]
    /// Whether the sender waits for a `reply(to:payload:)`.
    public let isRequest: Bool
    let requestID: UInt64
    let requester: UInt32
}

/// What a receiver can be told: a message, or a peer site's link coming up or going down.
public enum ClientEvent: Sendable, Equatable {
    case message(ReceivedMessage)
    case siteUp(Int32)
    case siteDown(Int32)
}

public enum BrokerClientError: Error, Equatable, CustomStringConvertible {
    /// No connection to the broker right now (it is down or restarting); the client keeps reconnecting.
    case brokerUnavailable(String)
    /// control + rec exceed the broker's limit.
    case messageTooLarge(size: Int, limit: Int)
    /// The broker could not queue a PERMANENT message (a peer queue is full).
    case refused(String)
    /// No such site in the group.
    case unroutable(Int32)
    /// The broker did not answer a PERMANENT send in time.
    case timedOut
    /// A PERMANENT message was sent but its ack policy was not met within the ack timeout: the sites that had
    /// acknowledged its LSN by then, and those that had not.
    case notAcknowledged(acked: [Int32], missing: [Int32])
    /// Nobody subscribes to that channel at the destination site (like repmgr's DB_NOSERVER).
    case noSubscriber
    /// The destination was the master and no master is known for the group.
    case noMaster
    /// `close()` was called.
    case closed
    /// The broker broke the protocol or rejected the client.
    case protocolError(String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .brokerUnavailable(let why): return "broker unavailable: \(why)"
        case .messageTooLarge(let size, let limit): return "message of \(size) bytes exceeds the broker's limit of \(limit)"
        case .refused(let why): return "refused: \(why)"
        case .unroutable(let site): return "site \(site) is not a member of the group"
        case .timedOut: return "timed out"
        case .notAcknowledged(let acked, let missing):
            return "not acknowledged by enough sites in time: acknowledged by sites \(acked.isEmpty ? "none" : acked.map(String.init).joined(separator: ", ")), "
                + "not by \(missing.isEmpty ? "none" : missing.map(String.init).joined(separator: ", "))"
        case .noSubscriber: return "no subscriber for that channel at the destination site"
        case .noMaster: return "no master is known for the group"
        case .closed: return "client closed"
        case .protocolError(let why): return "protocol error: \(why)"
        case .invalidArgument(let why): return "invalid argument: \(why)"
        }
    }
}
