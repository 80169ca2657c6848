// The socket of one core session (a local client or a peer connection): reads into the session's input buffer
// and hands the bytes to the core, writes what the session offers, and watches EPOLLOUT only while a write is
// incomplete. A client's rings (the segment and its doorbells) live here too: the core has only their memory.
// The descriptor is closed exactly once, when the core asks (CoreAction.close). A peer connection with TLS reads
// and writes through its session (SessionSocket+TLS.swift); the core sees the same plain frames.
import BrokerCore
import BrokerSystem
import BrokerWire

final class SessionSocket: LoopHandler {
    let descriptor: OwnedDescriptor
    let session: Session
    /// The broker outlives every socket it serves.
    unowned let broker: Broker
    var token: UInt64 = 0
    /// A dial whose connect has not completed.
    var connecting: Bool
    private var watchingWrites = false
    private(set) var readingPaused = false
    /// The client's rings: the mapping and its two doorbells (the broker's own is the loop's eventfd).
    var rings: (segment: SharedSegment, data: EventFd, room: EventFd)?
    /// A peer connection's TLS (with --tls-cert).
    let tls: TLSLink?

    init(_ descriptor: OwnedDescriptor, session: Session, broker: Broker, connecting: Bool = false,
         tls: TLSLink? = nil) throws(SystemError) {
        self.descriptor = descriptor
        self.session = session
        self.broker = broker
        self.connecting = connecting
        self.tls = tls
        watchingWrites = connecting
        session.attachment = self
        token = try broker.loop.register(descriptor.number, connecting ? .readableAndWritable : .readable, self)
    }

    func handleEvents(_ events: EpollEvents) {
        guard !session.isClosed else { return }
        if connecting {
            // A dialled connection finishes its connect before it reads: epoll may report the peer's HELLO
            // (readable) in the same event as the completed connect (writable).
            if let error = Socket.pendingError(descriptor.number) {
                broker.core.failed(session, reason: "connect failed: \(error)")
                return
            }
            connecting = false
            Broker.configurePeerSocket(descriptor.number)
            broker.core.connected(session)
            if let tls { startHandshake(tls) }
        }
        // A hang-up is read even while reading is paused: nothing more will come, and what came is handled.
        let hangUp = events.rawValue & (EpollEvents.hangup.rawValue | EpollEvents.error.rawValue) != 0
        if events.rawValue & EpollEvents.readReadiness.rawValue != 0 && (!readingPaused || hangUp) { readAvailable() }
        if !session.isClosed && events.rawValue & EpollEvents.writable.rawValue != 0 { flush() }
    }

    /// Reads while each read fills the space offered, up to the session's reads per event (one, once the
    /// pass's read budget is spent: a pass stays short, so timers and credit come round often).
    private func readAvailable() {
        if let tls { return readAvailable(through: tls) }
        var reads = session.readsPerEvent
        while true {
            let space = session.readSpace()
            let result: IOResult<Int>
            do { result = try Posix.read(descriptor: descriptor.number, into: space) } catch {
                return broker.core.failed(session, reason: "read failed: \(error)")
            }
            guard case .processed(let count) = result else { return }
            guard count > 0 else { return broker.core.endOfInput(session) }
            broker.loop.readBudget -= count
            broker.core.received(session, bytes: count)
            if session.isClosed || count < space.count || readingPaused || reads <= 1 || broker.loop.readBudget <= 0 { return }
            reads -= 1
        }
    }

    /// Writes as much pending output as the socket takes (a client's ring first: its records are published,
    /// and its receiver's doorbell rung when it sleeps).
    func flush() {
        if let tls { return flush(through: tls) }
        if session.publishRing() { rings?.data.signal() }
        while !session.isClosed {
            let output = session.pendingOutput()
            guard output.count > 0 else { return setWatchingWrites(false) }
            let result: IOResult<Int>
            do { result = try Posix.write(descriptor: descriptor.number, from: output) } catch {
                return broker.core.failed(session, reason: "write failed: \(error)")
            }
            switch result {
            case .wouldBlock:
                return setWatchingWrites(true)
            case .processed(let count):
                session.didWrite(count)
                if count < output.count { return setWatchingWrites(true) }
            }
        }
    }

    func setWatchingWrites(_ on: Bool) {
        guard on != watchingWrites, !session.isClosed else { return }
        watchingWrites = on
        updateInterest()
    }

    /// Stops or resumes reading (the kernel then holds, and finally refuses, what the other side sends).
    func setReadingPaused(_ paused: Bool) {
        guard paused != readingPaused else { return }
        readingPaused = paused
        updateInterest()
        // Plain bytes the TLS session holds come with no readiness event: the backlog hands them over.
        if !paused, let tls { broker.backlogTLS(self, tls) }
    }

    private func updateInterest() {
        var interest: EpollEvents = readingPaused ? [] : .readable
        if watchingWrites { interest.insert(.writable) }
        broker.loop.modify(descriptor.number, token: token, interest)
    }

    /// Writes `lastWords` if the socket takes them at once (best effort), then closes.
    func close(lastWords: [UInt8]) {
        if let tls {
            sayLastWords(lastWords, through: tls)
        } else if !lastWords.isEmpty {
            _ = lastWords.withUnsafeBytes { try? Posix.write(descriptor: descriptor.number, from: $0) }
        }
        broker.loop.deregister(descriptor.number, token: token)
        descriptor.close()
        rings = nil
        session.attachment = nil
    }
}
