// Application channels: SUBSCRIBE, CHANNEL (a 32-byte header, the channel name, the payload) and
// CHANNEL_RESULT. Channel traffic never mixes with replication MESSAGE frames.

/// SUBSCRIBE: the client takes its share of a channel's messages in its group.
public struct SubscribeFrame: Equatable, Sendable {
    public var channel: String
    public init(channel: String) { self.channel = channel }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(UInt16(channel.utf8.count))
        w.put(UInt16(0))
        w.put(channel.utf8)
        return w.bytes
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 4, .subscribe, exact: false)
        let length = Int(body.baseAddress.unsafelyUnwrapped.le16(0))
        guard 4 + length == body.count else { throw .malformed(type: .subscribe, reason: "name length does not fill the body") }
        channel = try decodeName(body, at: 4, length: length, limit: Wire.maxGroupName, required: true, .subscribe, "channel")
    }
}

/// CHANNEL: one application message, request or reply.
public struct ChannelFrame: Equatable, Sendable {
    public static let headerSize = 32
    public var group: UInt32
    public var source: Int32
    public var destination: Int32
    public var kind: ChannelKind
    public var channel: String
    public var requestID: UInt64
    public var requester: UInt32
    public var payload: [UInt8]

    public init(group: UInt32 = 0, source: Int32 = 0, destination: Int32, kind: ChannelKind, channel: String,
                requestID: UInt64, requester: UInt32 = 0, payload: [UInt8]) {
        self.group = group
        self.source = source
        self.destination = destination
        self.kind = kind
        self.channel = channel
        self.requestID = requestID
        self.requester = requester
        self.payload = payload
    }

    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(group)
        w.put(source)
        w.put(destination)
        w.put(kind.rawValue)
        w.put(UInt16(channel.utf8.count))
        w.put(requestID)
        w.put(requester)
        w.put(UInt32(payload.count))
        w.put(channel.utf8)
        w.put(payload)
        return w.bytes
    }

    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, Self.headerSize, .channel, exact: false)
        let p = body.baseAddress.unsafelyUnwrapped
        group = p.le32(0)
        source = p.leInt32(4)
        destination = p.leInt32(8)
        guard let kind = ChannelKind(rawValue: p.le16(12)) else {
            throw .malformed(type: .channel, reason: "unknown kind \(p.le16(12))")
        }
        self.kind = kind
        let nameLength = Int(p.le16(14))
        requestID = p.le64(16)
        requester = p.le32(24)
        let payloadLength = Int(p.le32(28))
        guard Self.headerSize + nameLength + payloadLength == body.count else {
            throw .malformed(type: .channel, reason: "name and payload lengths do not fill the body")
        }
        channel = try decodeName(body, at: Self.headerSize, length: nameLength, limit: Wire.maxGroupName, required: true,
                                 .channel, "channel")
        payload = Array(UnsafeRawBufferPointer(rebasing: body[(Self.headerSize + nameLength)...]))
    }
}

/// CHANNEL_RESULT: what became of a channel send or request.
public struct ChannelResultFrame: Equatable, Sendable {
    public var requestID: UInt64
    public var requester: UInt32
    public var status: ChannelStatus
    public init(requestID: UInt64, requester: UInt32, status: ChannelStatus) {
        self.requestID = requestID
        self.requester = requester
        self.status = status
    }
    public var body: [UInt8] {
        var w = ByteWriter()
        w.put(requestID)
        w.put(requester)
        w.put(status.rawValue)
        return w.bytes
    }
    public init(body: UnsafeRawBufferPointer) throws(WireError) {
        try requireSize(body, 16, .channelResult)
        let p = body.baseAddress.unsafelyUnwrapped
        requestID = p.le64(0)
        requester = p.le32(8)
        guard let status = ChannelStatus(rawValue: p.le32(12)) else {
            throw .malformed(type: .channelResult, reason: "unknown status \(p.le32(12))")
        }
        self.status = status
    }
}
