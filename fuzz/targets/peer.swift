// Fuzz target: the bodies of the peer links' frames, straight into their decoders (no frame header to get
// past): the first input byte picks HELLO, AUTH, MEMBERS, GROUP_BIND, PEER_ACK, PEER_MASTER, REMOVE_SITE,
// CREDIT or PEER_RECEIVER, the rest is the body. Any body may be refused with a WireError; none may crash or read past it.
// Compiled into one module with Sources/BrokerWire (scripts/fuzz): no import.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPeerFrames(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let body = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    do {
        switch data[0] % 9 {
        case 0: _ = try HelloFrame(body: body)
        case 1: _ = try AuthFrame(body: body)
        case 2: _ = try MembersFrame(body: body)
        case 3: _ = try GroupBindFrame(body: body)
        case 4: _ = try PeerAckFrame(body: body)
        case 5: _ = try MasterFrame(peerBody: body)
        case 6: _ = try RemoveSiteFrame(body: body)
        case 7: _ = try CreditFrame(body: body)
        default: _ = try PeerReceiverFrame(body: body)
        }
    } catch {}
    return 0
}
