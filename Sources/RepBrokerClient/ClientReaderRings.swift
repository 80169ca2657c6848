// The reader thread's rounds with rings, and the ring drain that both it and receiveAll use.
//
// Who consumes the to-client ring: an application thread in receiveAll when it can (it drains with the
// consumer lock, so messages reach it with no thread hop), else the reader thread, into the inbox. The
// reader thread leaves the ring alone while an application thread is blocked in receiveAll (it wakes that
// thread instead) or drained it within the last millisecond; meanwhile it waits in a 1 ms poll on the
// socket and the doorbell without saying it sleeps, and a receiveAll about to block rings the doorbell to
// call it back. Only the reader thread sleeps on the doorbell: after a short spin on an empty ring it says
// so in the ring (then the broker rings it) and waits in poll on the socket and the doorbell.
import BrokerSystem
import BrokerWire
import CRepBrokerIPC

extension ClientCore {
    enum DrainResult: Equatable { case handled, empty, failed(String) }

    /// One round of the reader thread with rings; returns why the connection must end, or nil.
    func serviceRing(_ ringSide: ClientRingSide, _ fd: CInt, _ buffer: ByteBuffer) -> String? {
        if let reason = ringSide.failureReason { return reason }
        if ringSide.hasRecords && !ringSide.awaitingSocketMessage {
            ringSide.readerYielding.store(true, ordering: .sequentiallyConsistent)
            let applicationWaits = state.withLock {
                if directWaiters > 0 { state.broadcast() }
                return directWaiters > 0
            }
            if applicationWaits || ringSide.applicationDrainsRing(now: Posix.monotonicNanoseconds()) {
                return yieldRing(ringSide, fd, buffer)
            }
            ringSide.readerYielding.store(false, ordering: .sequentiallyConsistent)
            ringSide.consumerLock.lock()
            let result = drainRing(ringSide, untilMark: false, budget: 4096) { frame, _ in
                ringSide.staging.append(frame.whole)
            }
            deliverStaged(ringSide.staging)
            ringSide.consumerLock.unlock()
            if case .failed(let reason) = result { return reason }
            if result == .handled { return nil }
        }
        // Waiting on a MARK: the next message is on the socket, whatever else the ring holds.
        let waitsForSocket = ringSide.awaitingSocketMessage
        if !waitsForSocket {
            for _ in 0..<2000 where ringSide.hasRecords { return nil }
        }
        let asleep = !waitsForSocket && ringSide.reader.prepareToSleep()
        let ready = rb_poll_two(fd, ringSide.clientDoorbell.descriptor, asleep || waitsForSocket ? 1000 : 0)
        if asleep { ringSide.reader.awake() }
        return handlePoll(ready, ringSide, fd, buffer)
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

    /// Consumes the to-client ring, consumer lock held: up to `budget` records, the ring's end, or a MARK
    /// (which means the next message comes by the socket). Each record is parsed where it lies, every
    /// header field read once and checked before use; messages go to `message`, site events to staging,
    /// other frames to their waiters.
    func drainRing(_ ringSide: ClientRingSide, untilMark: Bool, budget: Int = .max,
                   _ message: (Frame, MessageHeader) -> Void) -> DrainResult {
        var handled = 0
        var reachedMark = false
        let limit = state.withLock { messageLimit }
        let reader = ringSide.reader
        defer {
            reader.release()
            if reader.producerNeedsWake() { ringSide.brokerDoorbell.signal() }
        }
        do {
            while handled < budget, !ringSide.awaitingSocketMessage, let record = try reader.next() {
                handled += 1
                if record.kind == .mark {
                    if untilMark { reachedMark = true } else { ringSide.awaitingSocketMessage = true }
                    break
                }
                guard let frame = try FrameParser.next(in: record.payload, maxMessage: limit),
                      frame.totalSize == record.payload.count else {
                    return .failed("a ring record from the broker is not one frame")
                }
                if frame.type == .message {
                    message(frame, try MessageHeader(body: frame.body))
                } else if let reason = try handle(frame, staging: ringSide.staging) {
                    return .failed(reason)
                }
                if handled % 256 == 0 { reader.release() }
            }
        } catch {
            return .failed("bad ring record from the broker: \(error)")
        }
        if untilMark && !reachedMark { return .failed("the broker sent a message by the socket without its MARK") }
        return handled > 0 ? .handled : .empty
    }
}
