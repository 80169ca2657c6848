// The rings phase's reading side: a client's to-broker ring drained by the broker and each message routed
// where it lies. The client object only holds the ring; routing stays in the broker.
// A MESSAGE record is parsed in place: MessageHeader reads each field once and checks the lengths against
// the body; the payload is then only copied. Parts of a message in FRAGMENT records are joined in private
// memory first (RingFragments.swift).
import BrokerWire

extension Core {
    /// Records taken from one client's ring per pass: small enough that every ring (and so a latency-bound
    /// client beside bulk senders) is served within about a millisecond, large enough to amortize the pass.
    static let ringBudget = 256

    /// Handles up to `budget` records of `client`'s to-broker ring; returns how many it handled. A bad
    /// record closes that client alone, with a reason and a count. A producer's ring is not read while its
    /// group is congested (a client that hung up too: its records wait like a live one's).
    @discardableResult
    func drainRing(of client: ClientSession, budget: Int = Core.ringBudget) -> Int {
        guard let rings = client.rings, !client.isClosed, let group = client.group else { return 0 }
        let reader = rings.reader
        let assembler = rings.assembler
        let maxMessage = client.maxMessage
        let maxFrame = Wire.frameHeaderSize + Wire.messageHeaderSize + maxMessage
        var handled = 0
        do {
            // A producer stops at a queue's mark (a receiver never does: its sends let queues drain).
            let pausable = client.roleState != .receiver
            while handled < budget, !(pausable && group.congested && !rings.assembler.isJoining), let record = try reader.next() {
                handled += 1
                guard let whole = try assembler.add(kind: record.kind, payload: record.payload, maxFrame: maxFrame)
                else { continue }
                // The frame header is read once (FrameParser.next) and its type and length are values from then on.
                guard let frame = try FrameParser.next(in: whole, maxMessage: maxMessage), frame.totalSize == whole.count else {
                    throw WireError.malformed(type: .message, reason: "ring record is not exactly one frame")
                }
                guard frame.type == .message else {
                    throw WireError.unexpected(type: frame.type, state: "in the to-broker ring (only MESSAGE frames go there)")
                }
                let header = try MessageHeader(body: frame.body)
                route(from: client, in: group, header, payload: UnsafeRawBufferPointer(rebasing: frame.body[Wire.messageHeaderSize...]))
                if client.isClosed { return handled }
            }
        } catch let error as RingError {
            client.protocolError(.malformed(type: .message, reason: "to-broker ring: \(error.description)"))
            return handled
        } catch let error as WireError {
            client.protocolError(error)
            return handled
        } catch {
            client.close(reason: "\(error)")
            return handled
        }
        reader.release()
        if reader.producerNeedsWake() { ringRoomBell(client) }
        return handled
    }
}
