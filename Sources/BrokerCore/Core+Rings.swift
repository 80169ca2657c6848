// The rings phase: every client's to-broker ring drained (a budget per pass) and each message routed where
// it lies, and its to-client ring filled. The client object only holds the ring; routing stays in the broker.
// A MESSAGE record is parsed in place: MessageHeader reads each field once and checks the lengths against
// the body; the payload is then only copied. Parts of a message in FRAGMENT records are joined in private
// memory first (RingFragments.swift).
import BrokerWire

extension Core {
    /// Reads every client's to-broker ring and fills its to-client ring; returns the records and fills done.
    /// Each pass starts one client further on: when a queue passes its mark partway through a pass, the rings
    /// not read yet wait for the next, and no client is always the one left out. A client that hung up closes
    /// once its ring is empty.
    public func serviceRings() -> Int {
        var work = 0
        let count = clients.ringClients.count
        guard count > 0 else { return 0 }
        clients.ringCursor = clients.ringCursor >= count - 1 ? 0 : clients.ringCursor + 1
        for step in 0..<count {
            // A client closed during this pass leaves the array: stop at its new end.
            guard clients.ringClients.count == count else { break }
            let client = clients.ringClients[(clients.ringCursor + step) % count]
            // An empty ring is told by one load of its head: a full drain costs reference counting (perf: a
            // third of a busy broker's cycles went to polling 17 idle rings while it spun).
            if client.hasRingInput { work += drainRing(of: client) }
            if client.hungUp && !client.hasRingInput {
                client.close(reason: "closed by the other side, its ring drained")
                continue
            }
            if !client.output.isEmpty, client.flushToRing() {
                work += 1
                client.scheduleFlush()
            }
        }
        return work
    }

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
