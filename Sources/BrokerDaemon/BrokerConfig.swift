// Broker settings: defaults, a JSON config file, command-line flags over both, and validation before
// anything starts.
import Foundation
import BrokerSystem
#if canImport(Glibc)
import Glibc
#endif
import BrokerWire

/// A peer site and where to reach it.
public struct PeerConfig: Codable, Equatable, Sendable {
    public var siteID: Int32
    public var address: String
    public init(siteID: Int32, address: String) {
        self.siteID = siteID
        self.address = address
    }
    enum CodingKeys: String, CodingKey {
        case siteID = "site_id"
        case address
    }
}

/// Everything a broker needs to start.
public struct BrokerConfig: Equatable, Sendable {
    public var siteID: Int32
    public var listen: String?
    /// The address other sites dial (HOST:PORT, never a wildcard). nil: the listen address when it is specific,
    /// or else the local address of this broker's first peer connection.
    public var advertise: String?
    /// Listen on a non-loopback address without a group key (on a trusted network only).
    public var insecure = false
    /// Most local clients (socket and ring) served at once; one more is refused with a reason. nil: a share
    /// of the descriptor limit (at most 4096).
    public var maxClients: Int?
    /// Most groups served at once, local and bound by peers together.
    public var maxGroups = 1024
    /// A group with no client and nothing queued is released after this long.
    public var groupGraceMilliseconds = 60_000
    public var peers: [PeerConfig] = []
    public var socketPath: String
    public var adminSocketPath: String
    /// HOST:PORT where Prometheus scrapes GET /metrics; nil: no metrics port.
    public var metricsListen: String?
    public var logLevel: LogLevel = .info
    /// Log lines as text or one JSON object each.
    public var logFormat = LogFormat.text
    // The core's settings default to the core's defaults (CoreConfig), kept in one place.
    public var heartbeatMilliseconds = CoreConfig.defaults.heartbeatMilliseconds
    public var peerQueueBytes = CoreConfig.defaults.peerQueueBytes
    /// The window this broker grants each flow (group and class) of a peer, announced in HELLO.
    public var flowWindowBytes = CoreConfig.defaults.flowWindowBytes
    public var maxMessageBytes = CoreConfig.defaults.maxMessageBytes
    public var inboundQueueBytes = CoreConfig.defaults.inboundQueueBytes
    public var clientQueueBytes = CoreConfig.defaults.clientQueueBytes
    public var shutdownFlushMilliseconds = 2000
    /// Members to join through (HOST:PORT of any current member), instead of or besides a --peer list.
    public var join: [String] = []
    /// Local clients (and admin connections) allowed by SO_PEERCRED: these uids and gids, and the broker's own
    /// uid. Both empty: anyone who can open the socket (its mode and group decide).
    public var allowUIDs: [UInt32] = []
    public var allowGIDs: [UInt32] = []
    /// The group that owns both Unix sockets (with mode 0660, its members may connect).
    public var socketGroup: UInt32?
    /// The group key peer links prove with HMAC-SHA256 (from --group-key-file); nil: links are not authenticated.
    public var groupKey: [UInt8]?
    /// TLS 1.3 on every peer link (TLSSettings.swift); nil: plain links.
    public var tls: TLSSettings?
    /// Where the membership file is kept (default: the local socket's directory).
    public var stateDirectory: String?
    /// Stop when the process that started this broker exits (for supervisors and test harnesses).
    public var exitWithParent = false
    /// Largest shared-memory ring granted to a client (each of its two rings); 0 offers none.
    public var maxRingBytes = CoreConfig.defaults.maxRingBytes
    public var socketMode: UInt32 = 0o660
    /// What the loop does when a pass finds no work (see IdleStrategy.swift).
    public var idleStrategy = IdleStrategyKind.backoff

    public init(siteID: Int32, socketPath: String? = nil, adminSocketPath: String? = nil) {
        self.siteID = siteID
        self.socketPath = socketPath ?? Self.defaultSocketPath
        self.adminSocketPath = adminSocketPath ?? Self.defaultAdminSocketPath
    }

    /// `$XDG_RUNTIME_DIR/repbroker`, or `/tmp/repbroker-<uid>` without it.
    public static var defaultRuntimeDirectory: String {
        if let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return runtime + "/repbroker"
        }
        return "/tmp/repbroker-\(getuid())"
    }
    public static var defaultSocketPath: String { defaultRuntimeDirectory + "/broker.sock" }
    public static var defaultAdminSocketPath: String { defaultRuntimeDirectory + "/admin.sock" }

    /// Limits on tunables: a value outside is a configuration error.
    public static let maxMessageRange = 1...(1 << 30)
    public static let queueRange = (64 << 10)...(16 << 30)
    public static let heartbeatRange = 10...600_000
    public static let flowWindowRange = Int(Wire.minFlowWindow)...(1 << 30)
    public static let maxClientsRange = 1...1_000_000
    public static let maxGroupsRange = 1...65_536
    public static let groupGraceRange = 0...86_400_000

    /// Checks every setting. Peer addresses are parsed, not looked up: host names are resolved off the event
    /// loop, and an unresolvable one is retried, not fatal.
    func validate() throws(ConfigError) {
        guard siteID > 0 else { throw .invalid("site id must be a positive integer, not \(siteID)") }
        var seen: Set<Int32> = []
        for peer in peers {
            guard peer.siteID > 0 else { throw .invalid("peer site id must be positive, not \(peer.siteID)") }
            guard peer.siteID != siteID else { throw .invalid("peer \(peer.siteID) has this broker's own site id") }
            guard seen.insert(peer.siteID).inserted else { throw .invalid("peer \(peer.siteID) is listed twice") }
            if case .failure(let refused) = PeerAddress.parse(peer.address, verified: true) {
                throw .invalid("peer \(peer.siteID): \(refused)")
            }
        }
        if let groupKey, groupKey.count < 16 {
            throw .invalid("the group key must be at least 16 bytes, not \(groupKey.count)")
        }
        if let listen {
            let address: SocketAddress
            do { address = try SocketAddress(listen) } catch { throw .invalid("--listen: \(error)") }
            if !address.isLoopback && groupKey == nil && tls == nil && !insecure {
                throw .invalid("""
                    --listen \(listen) is reachable from other hosts, and there is no group key: any process that \
                    reaches this port could claim to be a site of the group and take over its link. Give every \
                    broker of the group the same --group-key-file (a secret of 16 bytes or more, for example made \
                    with 'head -c 32 /dev/urandom > group.key'), or certificates (--tls-cert, --tls-key, --tls-ca), \
                    or pass --insecure on a network you trust.
                    """)
            }
        }
        if let metricsListen {
            do { _ = try SocketAddress(metricsListen) } catch { throw .invalid("--metrics-listen: \(error)") }
        }
        if let advertise {
            guard listen != nil else { throw .invalid("--advertise needs --listen: it is the address of the listener") }
            if case .failure(let refused) = PeerAddress.parse(advertise, verified: true) {
                throw .invalid("--advertise: \(refused)")
            }
        }
        if !join.isEmpty {
            guard listen != nil else { throw .invalid("--join needs --listen: the group's sites must be able to reach this one") }
            for target in join {
                if case .failure(let refused) = PeerAddress.parse(target, verified: true) {
                    throw .invalid("--join: \(refused)")
                }
            }
        }
        if let maxClients, !Self.maxClientsRange.contains(maxClients) {
            throw .invalid("max clients must be in \(Self.maxClientsRange), not \(maxClients)")
        }
        guard Self.maxGroupsRange.contains(maxGroups) else {
            throw .invalid("max groups must be in \(Self.maxGroupsRange), not \(maxGroups)")
        }
        guard Self.groupGraceRange.contains(groupGraceMilliseconds) else {
            throw .invalid("group grace must be in \(Self.groupGraceRange) ms, not \(groupGraceMilliseconds)")
        }
        for (name, path) in [("socket", socketPath), ("admin socket", adminSocketPath)] {
            guard !path.isEmpty else { throw .invalid("\(name) path is empty") }
            guard path.utf8.count < Socket.maxUnixPathBytes else {
                throw .invalid("\(name) path is longer than \(Socket.maxUnixPathBytes - 1) bytes: \(path)")
            }
        }
        guard socketPath != adminSocketPath else { throw .invalid("socket and admin socket are the same path") }
        guard Self.maxMessageRange.contains(maxMessageBytes) else {
            throw .invalid("max message bytes must be in \(Self.maxMessageRange), not \(maxMessageBytes)")
        }
        for (name, value) in [("peer queue", peerQueueBytes), ("inbound queue", inboundQueueBytes),
                              ("client queue", clientQueueBytes)] {
            guard Self.queueRange.contains(value) else {
                throw .invalid("\(name) bytes must be in \(Self.queueRange), not \(value)")
            }
        }
        guard Self.flowWindowRange.contains(flowWindowBytes) else {
            throw .invalid("flow window bytes must be in \(Self.flowWindowRange), not \(flowWindowBytes)")
        }
        guard Self.heartbeatRange.contains(heartbeatMilliseconds) else {
            throw .invalid("heartbeat must be in \(Self.heartbeatRange) ms, not \(heartbeatMilliseconds)")
        }
        guard maxRingBytes == 0 || (RingLayout.minimumRingBytes...RingLayout.maximumRingBytes).contains(maxRingBytes) else {
            throw .invalid("max ring bytes must be 0 or in \(RingLayout.minimumRingBytes)...\(RingLayout.maximumRingBytes)")
        }
        guard socketMode <= 0o777 else { throw .invalid("socket mode \(String(socketMode, radix: 8)) is not a mode") }
    }

    /// The settings the core decides with.
    func coreConfig(maxClients: Int) -> CoreConfig {
        var core = CoreConfig(siteID: siteID)
        core.peers = peers.map { ($0.siteID, $0.address) }
        core.join = join
        core.listen = listen
        core.advertise = advertise
        core.groupKey = groupKey
        core.heartbeatMilliseconds = heartbeatMilliseconds
        core.peerQueueBytes = peerQueueBytes
        core.flowWindowBytes = flowWindowBytes
        core.maxMessageBytes = maxMessageBytes
        core.inboundQueueBytes = inboundQueueBytes
        core.clientQueueBytes = clientQueueBytes
        core.maxRingBytes = maxRingBytes
        core.maxClients = maxClients
        core.maxGroups = maxGroups
        core.groupGraceMilliseconds = groupGraceMilliseconds
        return core
    }
}

public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    case unreadable(String, String)
    public var description: String {
        switch self {
        case .invalid(let why): return "invalid configuration: \(why)"
        case .unreadable(let path, let why): return "cannot read config file \(path): \(why)"
        }
    }
}

/// The JSON config file: every key optional, names in snake_case.
struct ConfigFile: Codable {
    var site_id: Int32?
    var listen: String?
    var advertise: String?
    var insecure: Bool?
    var max_clients: Int?
    var max_groups: Int?
    var group_grace_ms: Int?
    var peers: [PeerConfig]?
    var socket: String?
    var admin_socket: String?
    var metrics_listen: String?
    var log_level: String?
    var log_format: String?
    var heartbeat_ms: Int?
    var peer_queue_bytes: Int?
    var flow_window_bytes: Int?
    var max_message_bytes: Int?
    var inbound_queue_bytes: Int?
    var client_queue_bytes: Int?
    var socket_mode: String?
    var max_ring_bytes: Int?
    var join: [String]?
    var state_dir: String?
    var group_key_file: String?
    var tls_cert: String?
    var tls_key: String?
    var tls_ca: String?
    /// ["2=<sha256>", ...], as --tls-pin takes them.
    var tls_pins: [String]?
    var allow_uids: [UInt32]?
    var allow_gids: [UInt32]?
    var socket_group: String?
    var idle_strategy: String?
}

extension BrokerConfig {
    /// The options `repbrokerd` takes, for the argument reader.
    public static let valuedOptions: Set<String> = [
        "site-id", "listen", "peer", "socket", "admin-socket", "config", "log-level", "log-format", "heartbeat-ms",
        "peer-queue-bytes", "flow-window-bytes", "max-message-bytes", "inbound-queue-bytes", "client-queue-bytes", "socket-mode",
        "max-ring-bytes", "join", "state-dir", "group-key-file", "allow-uid", "allow-gid", "socket-group",
        "advertise", "max-clients", "max-groups", "group-grace-ms", "idle-strategy", "tls-cert", "tls-key", "tls-ca",
        "tls-pin", "metrics-listen",
    ]
    /// The flags `repbrokerd` takes (options without a value).
    public static let flagNames: Set<String> = ["exit-with-parent", "insecure"]

    /// Builds a config from flags over an optional JSON file over defaults.
    public static func from(arguments: ParsedArguments) throws -> BrokerConfig {
        var file = ConfigFile()
        if let path = arguments.last("config") {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw ConfigError.unreadable(path, error.localizedDescription)
            }
            do { file = try JSONDecoder().decode(ConfigFile.self, from: data) } catch {
                throw ConfigError.unreadable(path, "not a valid config: \(error)")
            }
        }
        return try from(arguments: arguments, file: file)
    }

    /// Builds a config from flags over a decoded JSON file over defaults (not validated: `validate` does that).
    static func from(arguments: ParsedArguments, file: ConfigFile) throws -> BrokerConfig {
        guard let siteID = try arguments.integer("site-id", Int32.self) ?? file.site_id else {
            throw UsageError("--site-id is required (a positive integer, unique in the group)")
        }
        var config = BrokerConfig(siteID: siteID, socketPath: arguments.last("socket") ?? file.socket,
                                  adminSocketPath: arguments.last("admin-socket") ?? file.admin_socket)
        config.listen = arguments.last("listen") ?? file.listen
        config.advertise = arguments.last("advertise") ?? file.advertise
        config.metricsListen = arguments.last("metrics-listen") ?? file.metrics_listen
        config.insecure = arguments.has("insecure") || file.insecure == true
        config.maxClients = try arguments.integer("max-clients") ?? file.max_clients
        config.maxGroups = try arguments.integer("max-groups") ?? file.max_groups ?? config.maxGroups
        config.groupGraceMilliseconds = try arguments.integer("group-grace-ms") ?? file.group_grace_ms
            ?? config.groupGraceMilliseconds
        config.peers = file.peers ?? []
        for spec in arguments.all("peer") {
            guard let equals = spec.firstIndex(of: "="), let id = Int32(spec[..<equals]) else {
                throw UsageError("--peer takes ID=HOST:PORT, not '\(spec)'")
            }
            config.peers.removeAll { $0.siteID == id }
            config.peers.append(PeerConfig(siteID: id, address: String(spec[spec.index(after: equals)...])))
        }
        if let name = arguments.last("log-level") ?? file.log_level {
            guard let level = LogLevel(name: name) else {
                throw UsageError("--log-level must be one of trace, debug, info, warning, error; not '\(name)'")
            }
            config.logLevel = level
        }
        if let name = arguments.last("log-format") ?? file.log_format {
            guard let format = LogFormat(rawValue: name) else {
                throw UsageError("--log-format must be text or json; not '\(name)'")
            }
            config.logFormat = format
        }
        config.heartbeatMilliseconds = try arguments.integer("heartbeat-ms") ?? file.heartbeat_ms
            ?? config.heartbeatMilliseconds
        config.peerQueueBytes = try arguments.integer("peer-queue-bytes") ?? file.peer_queue_bytes
            ?? config.peerQueueBytes
        config.flowWindowBytes = try arguments.integer("flow-window-bytes") ?? file.flow_window_bytes
            ?? config.flowWindowBytes
        config.maxMessageBytes = try arguments.integer("max-message-bytes") ?? file.max_message_bytes
            ?? config.maxMessageBytes
        config.inboundQueueBytes = try arguments.integer("inbound-queue-bytes") ?? file.inbound_queue_bytes
            ?? config.inboundQueueBytes
        config.clientQueueBytes = try arguments.integer("client-queue-bytes") ?? file.client_queue_bytes
            ?? config.clientQueueBytes
        config.maxRingBytes = try arguments.integer("max-ring-bytes") ?? file.max_ring_bytes ?? config.maxRingBytes
        config.join = arguments.all("join").isEmpty ? file.join ?? [] : arguments.all("join")
        config.stateDirectory = arguments.last("state-dir") ?? file.state_dir
        let uids = try arguments.all("allow-uid").map { text throws(UsageError) -> UInt32 in
            guard let uid = UInt32(text) else { throw UsageError("--allow-uid takes a numeric uid, not '\(text)'") }
            return uid
        }
        config.allowUIDs = uids.isEmpty ? file.allow_uids ?? [] : uids
        let gids = try arguments.all("allow-gid").map { text throws(UsageError) -> UInt32 in
            guard let gid = UInt32(text) else { throw UsageError("--allow-gid takes a numeric gid, not '\(text)'") }
            return gid
        }
        config.allowGIDs = gids.isEmpty ? file.allow_gids ?? [] : gids
        if let group = arguments.last("socket-group") ?? file.socket_group {
            if let gid = UInt32(group) {
                config.socketGroup = gid
            } else if let entry = getgrnam(group) {
                config.socketGroup = entry.pointee.gr_gid
            } else {
                throw UsageError("--socket-group: no group named '\(group)'")
            }
        }
        if let keyFile = arguments.last("group-key-file") ?? file.group_key_file {
            guard let key = FileManager.default.contents(atPath: keyFile) else {
                throw ConfigError.unreadable(keyFile, "cannot read the group key file")
            }
            config.groupKey = Array(key)
        }
        let pins = arguments.all("tls-pin")
        config.tls = try TLSSettings.from(certificate: arguments.last("tls-cert") ?? file.tls_cert,
                                          key: arguments.last("tls-key") ?? file.tls_key,
                                          ca: arguments.last("tls-ca") ?? file.tls_ca,
                                          pins: pins.isEmpty ? file.tls_pins ?? [] : pins)
        if let name = arguments.last("idle-strategy") ?? file.idle_strategy {
            guard let kind = IdleStrategyKind(rawValue: name) else {
                throw UsageError("--idle-strategy must be backoff, spin or block; not '\(name)'")
            }
            config.idleStrategy = kind
        }
        if let mode = arguments.last("socket-mode") ?? file.socket_mode {
            guard let value = UInt32(mode, radix: 8) else { throw UsageError("--socket-mode takes octal, not '\(mode)'") }
            config.socketMode = value
        }
        return config
    }
}
