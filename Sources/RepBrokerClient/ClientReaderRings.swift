// The reader thread's rounds with rings, and the ring drain that both it and receiveAll use.
//
// Who consumes the to-client ring: an application thread in receiveAll when it can (it drains with the
// consumer lock, so messages reach it with no thread hop), else the reader thread, into the inbox. The
// reader thread leaves the ring alone while an application thread is blocked in receiveAll (it wakes that
// thread instead) or drained it within the last millisecond; meanwhile it waits in a 1 ms poll on the
// socket and the doorbell without saying it sleeps, and a receiveAll about to block rings the doorbell to
// call it back. It never blocks on the consumer lock (it yields the same way when the lock is taken), so it
// keeps reading the socket for a callback that waits for the broker. When the lock is still taken after
// that millisecond (a callback runs long), it says it wants the ring: the application's drain stops after
// the current callback and leaves the ring to this thread until it has drained it, so that what other
// threads wait for (a send result) is not held behind the callbacks. Only the reader thread sleeps on the
// doorbell: after a short spin on an empty ring it says so in the ring (then the broker rings it) and
// waits in poll on the socket and the doorbell.
import BrokerSystem
import BrokerWire
import CRepBrokerIPC

extension ClientCore {
    enum DrainResult: Equatable { case handled, empty, failed(String) }

    /// One round of the reader thread with rings; returns why the connection must end, or nil.
    func serviceRing(_ ringSide: ClientRingSide, _ fd: CInt, _ buffer: ByteBuffer) -> String? {
        if let reason = ringSide.failureReason { return reason }
        if ringSide.hasWork {
            ringSide.readerYielding.store(true, ordering: .sequentiallyConsistent)
            // Once it asked for the ring, this thread takes it as soon as it is free (the application leaves it).
            let wanted = ringSide.consumerWanted.load(ordering: .relaxed)
            let applicationWaits = !wanted && state.withLock {
                if directWaiters > 0 { state.broadcast() }
                return directWaiters > 0
            }
            // Never blocks on the consumer lock: an application thread may hold it inside its callback while
            // it waits for something that only this thread's reading of the socket brings.
            if applicationWaits || !wanted && ringSide.applicationDrainsRing(now: Posix.monotonicNanoseconds()) {
                return yieldRing(ringSide, fd, buffer)
            }
            guard ringSide.consumerLock.tryLock() else {
                // Held past the yield window: a callback runs long; its drain stops after it.
                ringSide.consumerWanted.store(true, ordering: .relaxed)
                return yieldRing(ringSide, fd, buffer)
            }
            ringSide.consumerWanted.store(false, ordering: .relaxed)
            ringSide.readerYielding.store(false, ordering: .sequentiallyConsistent)
            let result = drainRing(ringSide, budget: 4096, stage(ringSide))
            deliverStaged(ringSide.staging)
            ringSide.consumerLock.unlock()
            if case .failed(let reason) = result { return reason }
            if result == .handled { return nil }
        }
        // Waiting on a MARK: the next message is on the socket, whatever else the ring holds.
        let waitsForSocket = ringSide.awaitingSocketMessage && !ringSide.hasWork
        if !waitsForSocket {
            for _ in 0..<2000 where ringSide.hasRecords { return nil }
        }
        let asleep = !waitsForSocket && ringSide.reader.prepareToSleep()
        let ready = rb_poll_two(fd, ringSide.clientDoorbell.descriptor, asleep || waitsForSocket ? 1000 : 0)
        if asleep { ringSide.reader.awake() }
        return handlePoll(ready, ringSide, fd, buffer)
    }

    /// A drain's message handler that stages messages for the inbox.
    func stage(_ ringSide: ClientRingSide) -> (Frame, MessageHeader) -> Bool {
        { frame, _ in
            ringSide.staging.append(frame.whole)
            return true
        }
    }

    /// Waits, `state` held, until the reader thread brings something or `deadline` passes; false on timeout.
    /// A thread inside receiveAll's callback holds the ring's consumer lock, so nothing it waits for (a send
    /// result, a channel reply, a role) can come from the ring unless it drains the ring itself: it moves
    /// the ring's records to the inbox and to their waiters, then polls every millisecond.
    func waitForBroker(until deadline: UInt64?) -> Bool {
        guard let ringSide = rings, ringSide.isDrainedByCallingThread else { return state.wait(untilNanoseconds: deadline) }
        state.unlock()
        let result = drainRing(ringSide, stage(ringSide))
        deliverStaged(ringSide.staging, holdBack: false)
        if case .failed(let reason) = result { ringSide.fail(reason) }
        if result == .handled { ringSide.drainedWhileCalledBack = true }
        state.lock()
        if result == .handled { return true }
        let slice = Posix.monotonicNanoseconds() + 1_000_000
        _ = state.wait(untilNanoseconds: deadline.map { min($0, slice) } ?? slice)
        return deadline.map { Posix.monotonicNanoseconds() < $0 } ?? true
    }

    /// Leaves the ring to the application for a moment: a short poll on the socket and the doorbell.
    private func yieldRing(_ ringSide: ClientRingSide, _ fd: CInt, _ buffer: ByteBuffer) -> String? {
        let ready = rb_poll_two(fd, ringSide.clientDoorbell.descriptor, 1)
        ringSide.readerYielding.store(false, ordering: .sequentiallyConsistent)
        return handlePoll(ready, ringSide, fd, buffer)
    }

    private func handlePoll(_ ready: CInt, _ ringSide: ClientRingSide, _ fd: CInt, _ buffer: ByteBuffer) -> String? {
        if ready > 0 && ready & 2 != 0 {
            ringSide.clientDoorbell.drain()
            // A sender may wait for room in the to-broker ring.
            state.withLock { state.broadcast() }
        }
        if ready > 0 && ready & 1 != 0 { return readOnce(fd, buffer) }
        return nil
    }

    /// Consumes the to-client ring, consumer lock held: up to `budget` messages and frames, the ring's end, a
    /// MARK whose socket message has not come yet, or `message` returning false. At a MARK the next message
    /// is the oldest that came by the socket. Each record is parsed where it lies, every header field read
    /// once and checked before use; messages go to `message`, site events to staging, other frames to their
    /// waiters.
    func drainRing(_ ringSide: ClientRingSide, budget: Int = .max, _ message: (Frame, MessageHeader) -> Bool) -> DrainResult {
        var handled = 0
        let limit = state.withLock { messageLimit }
        let reader = ringSide.reader
        defer {
            reader.release()
            if reader.producerNeedsWake() { ringSide.brokerDoorbell.signal() }
        }
        do {
            while handled < budget {
                if ringSide.awaitingSocketMessage {
                    guard let frame = ringSide.takeSocketMessage() else { break }
                    ringSide.awaitingSocketMessage = false
                    handled += 1
                    if !message(frame, try MessageHeader(body: frame.body)) { break }
                    continue
                }
                guard let record = try reader.next() else { break }
                handled += 1
                if record.kind == .mark {
                    ringSide.awaitingSocketMessage = true
                    continue
                }
                guard let frame = try FrameParser.next(in: record.payload, maxMessage: limit),
                      frame.totalSize == record.payload.count else {
                    return .failed("a ring record from the broker is not one frame")
                }
                if frame.type == .message {
                    // false: stop after this one.
                    if !message(frame, try MessageHeader(body: frame.body)) { break }
                } else if let reason = try handle(frame, staging: ringSide.staging) {
                    return .failed(reason)
                }
                if handled % 256 == 0 { reader.release() }
            }
        } catch {
            return .failed("bad ring record from the broker: \(error)")
        }
        return handled > 0 ? .handled : .empty
    }
}
