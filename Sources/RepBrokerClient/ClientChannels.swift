// Application channels on the client: subscribe, one-way sends that wait for their delivery result, requests
// that wait for their reply, and a channel inbox separate from the replication receiver's. Channel frames go by
// the socket (the control path), whatever the client's transport.
import BrokerSystem
import BrokerWire

/// What a channel send or request is waiting for.
enum ChannelOutcome {
    case status(ChannelStatus)
    case reply([UInt8])
}

extension ClientCore {
    func subscribe(channel: String) throws(BrokerClientError) {
        guard !channel.isEmpty, channel.utf8.count <= Wire.maxGroupName else {
            throw .invalidArgument("channel name must be 1...\(Wire.maxGroupName) bytes")
        }
        try sendControl(.subscribe, body: SubscribeFrame(channel: channel).body)
        state.withLock { if !subscriptions.contains(channel) { subscriptions.append(channel) } }
    }

    /// Sends a channel frame and waits for its outcome: a result for messages, a reply for requests.
    func exchange(channel: String, to destination: Int32, payload: [UInt8], kind: ChannelKind,
                  timeout: Double) throws(BrokerClientError) -> [UInt8] {
        guard !channel.isEmpty, channel.utf8.count <= Wire.maxGroupName else {
            throw .invalidArgument("channel name must be 1...\(Wire.maxGroupName) bytes")
        }
        guard destination > 0 || destination == SiteID.master else {
            throw .invalidArgument("a channel destination is a site id or SiteID.master")
        }
        let id = state.withLock { () -> UInt64 in
            let next = nextSequence
            nextSequence += 1
            channelWaiting.insert(next)
            // A reader thread holding back for a full inbox reads on while a reply is awaited.
            state.broadcast()
            return next
        }
        defer { state.withLock { channelWaiting.remove(id); channelOutcomes[id] = nil } }
        let frame = ChannelFrame(destination: destination, kind: kind, channel: channel, requestID: id, payload: payload)
        try sendControl(.channel, body: frame.body)
        let deadline = Posix.monotonicNanoseconds() + UInt64(max(0, timeout) * 1e9)
        let sent = state.withLock { generation }
        let outcomeResult = Result<ChannelOutcome, BrokerClientError> { () throws(BrokerClientError) -> ChannelOutcome in
            try state.withLock { () throws(BrokerClientError) -> ChannelOutcome in
                while true {
                    if let outcome = channelOutcomes[id] { return outcome }
                    if isClosed { throw BrokerClientError.closed }
                    if generation != sent { throw BrokerClientError.brokerUnavailable(lastError) }
                    if !state.wait(untilNanoseconds: deadline) && channelOutcomes[id] == nil { throw BrokerClientError.timedOut }
                }
            }
        }
        if case .failure(.timedOut) = outcomeResult {
            // Tell the broker, which counts timeouts in its stats.
            try? sendControl(.channelResult, body: ChannelResultFrame(requestID: id, requester: 0, status: .timedOut).body)
        }
        let outcome = try outcomeResult.get()
        switch outcome {
        case .reply(let payload): return payload
        case .status(.delivered): return []
        case .status(.noSubscriber): throw .noSubscriber
        case .status(.noMaster): throw .noMaster
        case .status(.unroutable): throw .unroutable(destination)
        case .status(.queueFull): throw .refused("a peer queue is full")
        case .status(.timedOut): throw .timedOut
        }
    }

    func reply(to message: ChannelMessage, payload: [UInt8]) throws(BrokerClientError) {
        guard message.isRequest else { throw .invalidArgument("that message is not a request") }
        let frame = ChannelFrame(destination: message.source, kind: .reply, channel: message.channel,
                                 requestID: message.requestID, requester: message.requester, payload: payload)
        try sendControl(.channel, body: frame.body)
    }

    func receiveChannelMessage(timeout: Double?) throws(BrokerClientError) -> ChannelMessage? {
        let deadline = timeout.map { Posix.monotonicNanoseconds() + UInt64(max(0, $0) * 1e9) }
        return try state.withLock { () throws(BrokerClientError) -> ChannelMessage? in
            guard subscribed else { throw BrokerClientError.invalidArgument("subscribe to a channel first") }
            while channelInbox.isEmpty {
                if isClosed { throw BrokerClientError.closed }
                if !state.wait(untilNanoseconds: deadline) && channelInbox.isEmpty { return nil }
            }
            return channelInbox.removeFirst()
        }
    }

    /// The reader thread's part: a channel frame or result from the broker.
    func handleChannel(_ frame: ChannelFrame) {
        state.withLock {
            if frame.kind == .reply {
                if channelWaiting.contains(frame.requestID) { channelOutcomes[frame.requestID] = .reply(frame.payload) }
            } else {
                channelInbox.append(ChannelMessage(channel: frame.channel, source: frame.source, payload: frame.payload,
                                                   isRequest: frame.kind == .request, requestID: frame.requestID,
                                                   requester: frame.requester))
            }
            state.broadcast()
        }
    }

    func handleChannelResult(_ result: ChannelResultFrame) {
        state.withLock {
            if channelWaiting.contains(result.requestID) { channelOutcomes[result.requestID] = .status(result.status) }
            state.broadcast()
        }
    }
}
