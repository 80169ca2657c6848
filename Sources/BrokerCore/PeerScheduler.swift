// What a peer link queues and what it sends next. A message is copied once, into its flow's queue. The wire
// is refilled only when it is empty: every control frame first, then
// the ready flows in turn (deficit round robin by bytes, `quantum` per turn), each while its window lasts,
// until the wire holds `wireTarget` bytes. So a heartbeat, an ack or a CREDIT waits behind at most one wire's
// worth of data, and a group's frames behind at most a quantum of each other busy flow's, plus the wire.
// A data frame sent the first time gets the flow's next sequence number; it stays in its flow's queue until the
// peer acknowledges it, and a new connection to the same peer sends the unacknowledged ones again, first
// (PeerFlow.swift).
import BrokerWire

extension PeerLink {
    /// Bytes a flow moves per turn. 16 KiB: about a dozen 1 KiB log records, or one page-sized bulk message.
    static let quantum = 16 << 10
    /// The wire is refilled up to this many bytes (and one frame): one write's worth.
    static let wireTarget = 64 << 10

    /// Queues a MESSAGE in its group's replication flow (the caller checked room) and schedules a write.
    func enqueue(_ header: MessageHeader, payload: UnsafeRawBufferPointer, in flow: PeerFlow, now: UInt64) {
        header.append(payload: payload, to: flow.queue)
        traceQueued(flow, now: now)
        flowBytes += Wire.frameHeaderSize + Wire.messageHeaderSize + payload.count
        messagesSent += 1
        bytesSent += payload.count
        flowHasData(flow)
    }

    /// Queues a whole data frame (CHANNEL) in `flow` (the caller checked room).
    func enqueue(frame: [UInt8], in flow: PeerFlow, now: UInt64) {
        flow.queue.append(frame)
        traceQueued(flow, now: now)
        flowBytes += frame.count
        flowHasData(flow)
    }

    @inline(__always)
    private func flowHasData(_ flow: PeerFlow) {
        if !flow.isReady && flow.canSend {
            flow.isReady = true
            ready.append(flow)
        }
        connection?.scheduleFlush()
    }

    /// Queues a control frame (GROUP_BIND, HEARTBEAT, PEER_ACK, ...): it goes before any data.
    func enqueueControl(_ frame: [UInt8]) {
        control.buffer.append(frame)
        connection?.scheduleFlush()
    }

    /// Refills the wire when it is empty.
    func refillWire() {
        guard wire.isEmpty else { return }
        wireCopyBytes = 0
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
                  let size = FrameParser.pendingFrameSize(in: UnsafeRawBufferPointer(rebasing: flow.queue.readable[flow.wiredBytes...])),
                  size <= flow.deficit {
                let frame = flow.queue.base + flow.queue.readIndex + flow.wiredBytes
                if flow.wiredBytes < flow.unackedBytes {
                    resent += 1
                } else {
                    // Sent the first time: numbered, and kept until acknowledged.
                    frame.storeBytes(of: nextSequence(of: flow).littleEndian, toByteOffset: PeerFlow.sequenceOffset, as: UInt32.self)
                    flow.unackedBytes += size
                    flow.messagesSent += 1
                    flow.bytesSent += size
                }
                wire.buffer.append(UnsafeRawBufferPointer(start: frame, count: size))
                wireCopyBytes += size
                flow.wiredBytes += size
                flow.deficit -= size
                flow.window -= size
                if flow.messagesSent == queueTrace.frame, queueTrace.wireEnd < 0, queueTrace.flow === flow {
                    // The followed frame's end in the link's written bytes (the wire was empty at the refill).
                    queueTrace.wireEnd = wireWritten + wire.byteCount
                }
            }
            if !flow.canSend {
                // Out of frames or out of window: the flow leaves its turn and the list (a CREDIT or a new
                // frame brings it back).
                if flow.unsentBytes > 0 { flow.stalls += 1 }
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

    /// The next sequence number of `flow` on this link. Kept per flow id for the link's life, so a group that
    /// takes a released index again never reuses a number the peer has already seen.
    @inline(__always)
    private func nextSequence(of flow: PeerFlow) -> UInt32 {
        let id = PeerFlow.id(group: flow.group.index, flow.trafficClass)
        if id >= lastSequence.count { lastSequence.append(contentsOf: repeatElement(0, count: id + 1 - lastSequence.count)) }
        lastSequence[id] &+= 1
        return lastSequence[id]
    }

    /// The peer's CREDIT: the flow may send that many more bytes, and its frames up to `acked` are let go.
    func credited(_ frame: CreditFrame) {
        let id = PeerFlow.id(group: frame.group, frame.trafficClass)
        // A flow released since (its group left) has nothing more to send.
        guard id < flows.count, let flow = flows[id] else { return }
        acknowledge(flow, through: frame.acked)
        flow.window += Int(frame.bytes)
        if !flow.isReady && flow.canSend {
            flow.isReady = true
            ready.append(flow)
            connection?.scheduleFlush()
        }
    }

    /// Lets go of `flow`'s frames numbered up to `acked`: the peer has handled them. A frame waiting to be sent
    /// again goes too (the peer had it after all).
    func acknowledge(_ flow: PeerFlow, through acked: UInt32) {
        // The queue's front frames are this broker's own, written whole: their lengths need no checking here.
        let front = UnsafeRawPointer(flow.queue.base + flow.queue.readIndex)
        var released = 0
        while released < flow.unackedBytes {
            let number = UInt32(littleEndian: front.loadUnaligned(fromByteOffset: released + PeerFlow.sequenceOffset,
                                                                  as: UInt32.self))
            guard sequence(number, isAtOrBefore: acked) else { break }
            released += Wire.frameHeaderSize + Int(UInt32(littleEndian: front.loadUnaligned(fromByteOffset: released,
                                                                                            as: UInt32.self)))
        }
        guard released > 0 else { return }
        flow.queue.consume(released)
        flow.unackedBytes -= released
        flow.wiredBytes = max(0, flow.wiredBytes - released)
        flowBytes -= released
        if flow.queue.isEmpty { flow.queue.shrinkIfIdle() }
    }

    /// A new connection: every flow starts again from the window the peer announced and sends its unacknowledged
    /// frames first, and this side owes the peer nothing. Of what the old connection's wire held, its data frames
    /// are in their flows still, and the control frames go first again but for CREDIT and HEARTBEAT, which belonged
    /// to that connection (a frame cut in half by it is gone).
    func restartFlows(window: Int) {
        peerWindow = window
        credit.reset()
        queueTrace = QueueTrace()
        keepControlFramesOfTheWire()
        control.removeFrames { !Self.outlivesConnection($0) }
        ready.removeAll(keepingCapacity: true)
        readyCursor = 0
        for case let flow? in flows {
            flow.window = window
            flow.deficit = 0
            flow.inTurn = false
            flow.wiredBytes = 0
            flow.isReady = flow.canSend
            if flow.isReady { ready.append(flow) }
        }
    }

    /// Whether a control frame queued for one connection is still to be sent on the next. Not a data frame (its
    /// flow sends it again), a heartbeat, a CREDIT (it returns bytes the peer's flows got back with the new
    /// connection's window: sent, it raises a window past its grant), or a PEER_RECEIVER (the link-up frames say
    /// whether the group has a receiver now; an older one after them would say otherwise). The last two were
    /// found by the simulator.
    static func outlivesConnection(_ type: FrameType?) -> Bool {
        guard let type, TrafficClass.of(type) == nil else { return false }
        return type != .credit && type != .heartbeat && type != .peerReceiver
    }

    private func keepControlFramesOfTheWire() {
        wire.discardPartialFront()
        guard !wire.isEmpty else { return }
        var kept: [UInt8] = []
        var rest = wire.readable
        while let size = FrameParser.pendingFrameSize(in: rest), size <= rest.count {
            if Self.outlivesConnection(FrameType(rawValue: rest[4])) {
                kept.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[..<size]))
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[size...])
        }
        wire.clear()
        wireCopyBytes = 0
        wire.buffer.append(kept)
    }

    /// The peer restarted: frames sent to its previous incarnation and not acknowledged may or may not have
    /// reached its receivers. They are dropped and counted (sending them again could deliver them twice); frames
    /// never sent go to the new incarnation. Returns how many were dropped.
    func dropUnacknowledged() -> Int {
        var dropped = 0
        for case let flow? in flows where flow.unackedBytes > 0 {
            while flow.unackedBytes > 0, let size = FrameParser.pendingFrameSize(in: flow.queue.readable) {
                flow.queue.consume(size)
                flow.unackedBytes -= size
                flowBytes -= size
                dropped += 1
            }
            flow.wiredBytes = 0
        }
        return dropped
    }

    /// Empties every queue (the site left the group for good).
    func clearQueues() {
        queueTrace = QueueTrace()
        wire.clear()
        wireCopyBytes = 0
        control.clear()
        for case let flow? in flows {
            flow.queue.clear()
            flow.wiredBytes = 0
            flow.unackedBytes = 0
            flow.framesQueued = flow.messagesSent
        }
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
            if queueTrace.flow === flow { queueTrace = QueueTrace() }
            flowBytes -= flow.queue.readableBytes
            if flow.isReady, let position = ready.firstIndex(where: { $0 === flow }) {
                ready.remove(at: position)
                if readyCursor > position { readyCursor -= 1 }
            }
            flows[id] = nil
        }
    }

    /// Bytes of `group` still to be sent on this link (both classes): what the congestion mark looks at.
    func queuedBytes(of group: Group) -> Int {
        var total = 0
        for trafficClass in TrafficClass.allCases {
            let id = PeerFlow.id(group: group.index, trafficClass)
            if id < flows.count, let flow = flows[id] { total += flow.unsentBytes }
        }
        return total
    }
}
