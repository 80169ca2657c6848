// The thin client a worker process links. Blocking and thread-safe: any thread may send; one thread at a
// time receives. Who owns what:
// - Sending threads write MESSAGE frames into the to-broker ring under `ringLock` (one producer at a time), and
//   control frames, and MESSAGE frames without rings, to the socket under `writeLock`. A sender waiting for ring
//   room holds `ringLock` only, so an ACK or a channel reply never waits for ring room.
// - The receiving thread (receive, receiveAll, nextEvent) alone reads the to-client ring, which carries the
//   receiver's MESSAGE and SITE_EVENT frames, and blocks on its doorbell itself (ClientReceive.swift).
// - The reader thread alone reads the socket: send results, roles, channel frames, errors, and without
//   rings the receiver's frames, into the inbox (ClientReader.swift). When the broker goes away it fails
//   what waits, then reconnects and registers again with backoff. Sends made while disconnected fail at once.
// `ringLock` and `writeLock` are both held whenever the descriptor or the rings are swapped, so a send never
// writes to a descriptor that was closed and reused, nor to rings that were unmapped. Locks are taken in the
// order `ringLock`, `writeLock`, `state`. Nobody waits while holding `writeLock` but a socket write; a sender
// waits for ring room holding `ringLock`, room the broker makes without any thread of this process.
import BrokerSystem
import BrokerWire
#if canImport(Glibc)
import Glibc
#endif

public final class BrokerClient: @unchecked Sendable {
    let core: ClientCore

    /// Connects and registers; throws `brokerUnavailable` when the broker cannot be reached.
    public init(options: BrokerClientOptions) throws(BrokerClientError) {
        guard !options.group.isEmpty, options.group.utf8.count <= Wire.maxGroupName else {
            throw .invalidArgument("group name must be 1...\(Wire.maxGroupName) bytes")
        }
        guard options.receiveSpin >= 0, options.receiveSpin <= 1 else {
            throw .invalidArgument("receive spin must be in [0, 1] seconds")
        }
        guard options.ackTimeout > 0, options.ackTimeout <= 600 else {
            throw .invalidArgument("ack timeout must be in (0, 600] seconds")
        }
        guard options.name.utf8.count <= Wire.maxClientName else {
            throw .invalidArgument("client name must be at most \(Wire.maxClientName) bytes")
        }
        core = try ClientCore(options: options)
        try core.connectFirst()
    }

    deinit { core.close() }

    /// This site's id (the broker's), once registered.
    public var siteID: Int32 { core.state.withLock { core.welcome?.siteID ?? 0 } }
    /// Whether this client holds its group's receiver role now.
    public var isReceiver: Bool { core.state.withLock { core.roleState == .receiver } }
    /// Whether the client is connected to the broker now.
    public var isConnected: Bool { core.state.withLock { core.connection != nil } }
    /// The broker's limit on control + rec.
    public var maxMessage: Int { core.state.withLock { core.messageLimit } }

    /// Hands one message to the broker. Returns once it is queued; with `.permanent`, once the broker
    /// has accepted it for every destination (or throws `refused`).
    public func send(
        control: UnsafeRawBufferPointer, rec: UnsafeRawBufferPointer, lsn: LSN = .zero, to destination: Int32,
        flags: RepFlags = []
    ) throws(BrokerClientError) {
        try core.send(control: control, rec: rec, lsn: lsn, to: destination, flags: flags)
    }

    public func send(
        control: [UInt8], rec: [UInt8], lsn: LSN = .zero, to destination: Int32, flags: RepFlags = []
    ) throws(BrokerClientError) {
        var failure: BrokerClientError?
        control.withUnsafeBytes { c in
            rec.withUnsafeBytes { r in
                do throws(BrokerClientError) { try core.send(control: c, rec: r, lsn: lsn, to: destination, flags: flags) } catch { failure = error }
            }
        }
        if let failure { throw failure }
    }

    /// The next message for this site's receiver, or nil after `timeout` seconds (nil: wait for ever).
    /// Site events are skipped; use `nextEvent` to see them.
    public func receive(timeout: Double?) throws(BrokerClientError) -> ReceivedMessage? {
        while true {
            switch try core.nextEvent(timeout: timeout) {
            case .message(let message)?: return message
            case nil: return nil
            default: continue
            }
        }
    }

    /// Hands every message now waiting (after waiting up to `timeout` for the first) to `body`, whose views
    /// are valid only during the call; site events are skipped. No allocation per message. Returns the count.
    /// With shared-memory rings the views point into the ring. `body` may send on this client, PERMANENT sends
    /// and channel requests included; receiving again from `body` throws `invalidArgument`.
    @discardableResult
    public func receiveAll(timeout: Double?, _ body: (MessageView) -> Void) throws(BrokerClientError) -> Int {
        try core.receiveAll(timeout: timeout, body)
    }

    /// The next message or site event for this site's receiver, or nil after `timeout` seconds.
    public func nextEvent(timeout: Double?) throws(BrokerClientError) -> ClientEvent? {
        try core.nextEvent(timeout: timeout)
    }

    /// Tells the broker this site holds site `source`'s log durably up to `lsn`: `DB_REP_ISPERM` and its
    /// `ret_lsnp` from `rep_process_message` of a message from `source` (its `ReceivedMessage.source`). The
    /// broker carries the ack to that site alone, where PERMANENT sends wait for it.
    public func acknowledge(lsn: LSN, to source: Int32) throws(BrokerClientError) {
        guard source > 0 else { throw .invalidArgument("acknowledge: site \(source) is not a site") }
        try core.sendControl(.ack, body: AckFrame(lsn: lsn, siteID: source).body)
    }

    /// Tells the broker which site is the group's master (0: none); the broker tells its peers.
    public func announceMaster(siteID: Int32) throws(BrokerClientError) {
        guard siteID >= 0 else { throw .invalidArgument("master site id must be 0 or positive") }
        try core.sendControl(.master, body: MasterFrame(siteID: siteID).localBody)
    }

    /// Waits until this client holds the receiver role, or `timeout` passes; true when it does.
    public func waitForReceiverRole(timeout: Double) -> Bool {
        core.waitFor(timeout: timeout) { core.roleState == .receiver }
    }

    /// Waits until connected and registered, or `timeout` passes; true when connected.
    public func waitForConnection(timeout: Double) -> Bool {
        core.waitFor(timeout: timeout) { core.connection != nil }
    }

    // MARK: application channels

    /// Takes a share (round-robin) of the messages sent to `channel` at this site, in this client's group.
    public func subscribe(channel: String) throws(BrokerClientError) { try core.subscribe(channel: channel) }

    /// Sends `payload` on `channel` to one subscriber at site `destination` (or `SiteID.master`); returns once
    /// it was handed to a subscriber, throws `noSubscriber`, `noMaster`, `unroutable` or `timedOut`.
    public func send(channel: String, to destination: Int32, payload: [UInt8], timeout: Double = 5) throws(BrokerClientError) {
        _ = try core.exchange(channel: channel, to: destination, payload: payload, kind: .message, timeout: timeout)
    }

    /// Sends a request on `channel` and waits for the subscriber's reply, or throws (`timedOut` after `timeout`).
    public func request(channel: String, to destination: Int32, payload: [UInt8], timeout: Double = 5)
        throws(BrokerClientError) -> [UInt8] {
        try core.exchange(channel: channel, to: destination, payload: payload, kind: .request, timeout: timeout)
    }

    /// The next message on a subscribed channel, or nil after `timeout` seconds.
    public func receiveChannelMessage(timeout: Double?) throws(BrokerClientError) -> ChannelMessage? {
        try core.receiveChannelMessage(timeout: timeout)
    }

    /// Answers a request received on a channel.
    public func reply(to message: ChannelMessage, payload: [UInt8]) throws(BrokerClientError) {
        try core.reply(to: message, payload: payload)
    }

    /// Disconnects for good; pending calls fail with `closed`.
    public func close() { core.close() }
}
