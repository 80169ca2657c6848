// Fuzz target: the frame parser and every frame's decoder, as a broker meets bytes from a local client or a
// peer. Any input may be rejected with a WireError; none may crash, read out of bounds or loop.
// Compiled into one module with Sources/BrokerWire (scripts/fuzz): no import.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var rest = UnsafeRawBufferPointer(start: data, count: size)
    while true {
        let frame: Frame
        do {
            guard let next = try FrameParser.next(in: rest, maxMessage: 1 << 16) else { return 0 }
            frame = next
        } catch { return 0 }
        let body = frame.body
        do {
            switch frame.type {
            case .register: _ = try RegisterFrame(body: body)
            case .welcome: _ = try WelcomeFrame(body: body)
            case .role: _ = try RoleFrame(body: body)
            case .sendResult: _ = try SendResultFrame(body: body)
            case .error: _ = try ErrorFrame(body: body)
            case .siteEvent: _ = try SiteEventFrame(body: body)
            case .ack: _ = try AckFrame(body: body)
            case .ackPolicy: _ = try AckPolicyFrame(body: body)
            case .master: _ = try MasterFrame(localBody: body)
            case .subscribe: _ = try SubscribeFrame(body: body)
            case .message:
                let header = try MessageHeader(body: body)
                _ = MessageHeader.payload(of: body, header)
            case .channel: _ = try ChannelFrame(body: body)
            case .channelResult: _ = try ChannelResultFrame(body: body)
            case .hello: _ = try HelloFrame(body: body)
            case .activate, .heartbeat: break
            case .groupBind: _ = try GroupBindFrame(body: body)
            case .peerAck: _ = try PeerAckFrame(body: body)
            case .peerMaster: _ = try MasterFrame(peerBody: body)
            case .members: _ = try MembersFrame(body: body)
            case .removeSite: _ = try RemoveSiteFrame(body: body)
            case .auth: _ = try AuthFrame(body: body)
            case .credit: _ = try CreditFrame(body: body)
            case .peerReceiver: _ = try PeerReceiverFrame(body: body)
            }
        } catch {}
        rest = UnsafeRawBufferPointer(rebasing: rest[frame.totalSize...])
    }
}
