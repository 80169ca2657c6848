// What a peer link sends next. The wire is refilled only when it is empty: every control frame first, then
// the ready flows in turn (deficit round robin by bytes, `quantum` per turn), each while its window lasts,
// until the wire holds `wireTarget` bytes. So a heartbeat, an ack or a CREDIT waits behind at most one wire's
// worth of data, and a group's frames behind at most a quantum of each other busy flow's, plus the wire.
import BrokerWire

extension PeerLink {
    /// Bytes a flow moves per turn. 16 KiB: about a dozen 1 KiB log records, or one page-sized bulk message.
    static let quantum = 16 << 10
    /// The wire is refilled up to this many bytes (and one frame): one write's worth.
    static let wireTarget = 64 << 10

    /// Refills the wire when it is empty.
    func refillWire() {
        guard wire.isEmpty else { return }
        if !control.isEmpty { control.moveAll(to: wire.buffer) }
        let target = Self.wireTarget
        while wire.byteCount < target, !ready.isEmpty {
            if readyCursor >= ready.count { readyCursor = 0 }
            let flow = ready[readyCursor]
            if !flow.inTurn {
                flow.deficit += Self.quantum
                flow.inTurn = true
            }
            while wire.byteCount < target, flow.window > 0,
                  let size = FrameParser.pendingFrameSize(in: flow.queue.readable), size <= flow.deficit {
                wire.buffer.append(UnsafeRawBufferPointer(rebasing: flow.queue.readable[..<size]))
                flow.queue.consume(size)
                flowBytes -= size
                flow.deficit -= size
                flow.window -= size
                flow.messagesSent += 1
                flow.bytesSent += size
            }
            if !flow.canSend {
                // Out of frames or out of window: the flow leaves its turn and the list (a CREDIT or a new
                // frame brings it back).
                if !flow.queue.isEmpty { flow.stalls += 1 } else { flow.queue.shrinkIfIdle() }
                flow.deficit = 0
                flow.inTurn = false
                flow.isReady = false
                ready.remove(at: readyCursor)
            } else if wire.byteCount >= target {
                return
            } else {
                flow.inTurn = false
                readyCursor += 1
            }
        }
    }

    /// The peer's CREDIT: the flow may send that many more bytes.
    func credited(_ frame: CreditFrame) {
        let id = PeerFlow.id(group: frame.group, frame.trafficClass)
        // A flow released since (its group left) has nothing more to send.
        guard id < flows.count, let flow = flows[id] else { return }
        flow.window += Int(frame.bytes)
        if !flow.isReady && flow.canSend {
            flow.isReady = true
            ready.append(flow)
            connection?.scheduleFlush()
        }
    }

    /// A new connection: every flow starts again from the window the peer announced, less the data frames
    /// still in the wire from the last connection (they go first), and this side owes the peer nothing.
    func restartFlows(window: Int) {
        peerWindow = window
        credit.reset()
        for case let flow? in flows {
            flow.window = window
            flow.deficit = 0
            flow.inTurn = false
        }
        var rest = wire.readable
        while let size = FrameParser.pendingFrameSize(in: rest), size <= rest.count,
              size >= Wire.frameHeaderSize + 4 {
            if let type = FrameType(rawValue: rest[4]), let trafficClass = TrafficClass.of(type) {
                let group = UInt32(littleEndian: rest.loadUnaligned(fromByteOffset: Wire.frameHeaderSize, as: UInt32.self))
                let id = PeerFlow.id(group: group, trafficClass)
                if id < flows.count, let flow = flows[id] { flow.window -= size }
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[size...])
        }
        ready.removeAll(keepingCapacity: true)
        readyCursor = 0
        for case let flow? in flows {
            flow.isReady = flow.canSend
            if flow.isReady { ready.append(flow) }
        }
    }

    /// Empties every queue (the site left the group for good).
    func clearQueues() {
        wire.clear()
        control.clear()
        for case let flow? in flows { flow.queue.clear() }
        flowBytes = 0
        for flow in ready { flow.isReady = false }
        ready.removeAll()
        readyCursor = 0
    }

    /// Empties every queue for good and gives back their memory (flows are made again on first use): the link's
    /// site was removed from the group.
    func releaseQueues() {
        clearQueues()
        wire.releaseMemory()
        control.releaseMemory()
        flows.removeAll()
    }

    /// Forgets `group`'s flows (released: they are empty).
    func removeFlows(of group: Group) {
        for trafficClass in TrafficClass.allCases {
            let id = PeerFlow.id(group: group.index, trafficClass)
            guard id < flows.count, let flow = flows[id] else { continue }
            flowBytes -= flow.queue.readableBytes
            if flow.isReady, let position = ready.firstIndex(where: { $0 === flow }) {
                ready.remove(at: position)
                if readyCursor > position { readyCursor -= 1 }
            }
            flows[id] = nil
        }
    }

    /// Bytes queued for `group` on this link (both classes).
    func queuedBytes(of group: Group) -> Int {
        var total = 0
        for trafficClass in TrafficClass.allCases {
            let id = PeerFlow.id(group: group.index, trafficClass)
            if id < flows.count, let flow = flows[id] { total += flow.queue.readableBytes }
        }
        return total
    }
}
