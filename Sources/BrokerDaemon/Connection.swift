// Base of every stream the broker serves: reads into a reusable buffer and parses frames in place,
// writes whatever `pendingOutput` offers, watches EPOLLOUT only while a write is incomplete.
// Subclasses handle frames and supply output; `close` tears down exactly once.
import BrokerSystem
import BrokerWire

class Connection: LoopHandler {
    let descriptor: CInt
    /// The loop outlives every connection registered with it.
    unowned let loop: EventLoop
    var token: UInt64 = 0
    let input: ByteBuffer
    var maxMessage: Int
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-ipc-builds, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) var isDirty = false
    @exclusivity(unchecked) private(set) var isClosed = false
    private var watchingWrites = false
    /// Not reading for now (backpressure): the socket is out of epoll's read interest.
    private(set) var readingPaused = false
    /// Bytes read before a read is attempted again; the buffer is kept at least this large.
    static let minimumRead = 64 << 10

    init(descriptor: CInt, loop: EventLoop, maxMessage: Int, inputCapacity: Int = 128 << 10) {
        self.descriptor = descriptor
        self.loop = loop
        self.maxMessage = maxMessage
        input = ByteBuffer(capacity: inputCapacity)
    }

    /// Registers with the loop, reading (and also writing, while a connect is in progress).
    func register(connecting: Bool = false) throws(SystemError) {
        watchingWrites = connecting
        token = try loop.register(descriptor, connecting ? .readableAndWritable : .readable, self)
    }

    func handleEvents(_ events: EpollEvents) {
        // A hang-up is read even while reading is paused: nothing more will come, and what came is handled.
        let hangUp = events.rawValue & (EpollEvents.hangup.rawValue | EpollEvents.error.rawValue) != 0
        if events.rawValue & EpollEvents.readReadiness.rawValue != 0 && (!readingPaused || hangUp) { readAvailable() }
        if !isClosed && events.rawValue & EpollEvents.writable.rawValue != 0 { flush() }
    }

    // MARK: input

    /// Reads at most this many times per readiness event while each read fills the buffer. Peer links read more
    /// (a CREDIT waits behind whatever the socket holds: reading it a buffer per pass would stretch the credit
    /// loop to many passes).
    var readsPerEvent: Int { 1 }

    func readAvailable() {
        var reads = readsPerEvent
        while readOnce(), !isClosed, !readingPaused, reads > 1, loop.readBudget > 0 { reads -= 1 }
    }

    /// One read and the frames it completes; true when the read filled the space offered (more may wait).
    private func readOnce() -> Bool {
        if let needed = FrameParser.pendingFrameSize(in: input.readable), needed > input.readableBytes {
            input.reserve(needed - input.readableBytes)
        }
        input.reserve(Self.minimumRead)
        let result: IOResult<Int>
        let space = input.writable.count
        do { result = try Posix.read(descriptor: descriptor, into: input.writable) } catch {
            close(reason: "read failed: \(error)")
            return false
        }
        guard case .processed(let count) = result else { return false }
        guard count > 0 else {
            otherSideClosed()
            return false
        }
        input.commit(count)
        loop.readBudget -= count
        didRead(bytes: count)
        do {
            while !isClosed, let frame = try FrameParser.next(in: input.readable, maxMessage: maxMessage) {
                try handleFrame(frame)
                if isClosed { return false }
                input.consume(frame.totalSize)
            }
        } catch {
            protocolError(error)
            return false
        }
        input.shrinkIfIdle()
        return count == space
    }

    /// End of stream: everything the other side sent by the socket has been handled.
    func otherSideClosed() { close(reason: "closed by the other side") }

    /// Bytes arrived (for liveness and counters).
    func didRead(bytes: Int) {}

    /// One complete frame; its body points into `input` and is valid only during the call.
    func handleFrame(_ frame: Frame) throws(WireError) {
        throw .unexpected(type: frame.type, state: "on this connection")
    }

    /// A bad frame: subclasses count it, tell the other side and close.
    func protocolError(_ error: WireError) {
        close(reason: error.description)
    }

    // MARK: output

    /// The next bytes to write, empty when there is nothing.
    func pendingOutput() -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    /// `count` bytes of `pendingOutput()` were written.
    func didWrite(_ count: Int) {}

    /// Asks for a flush at the end of this loop turn; after the first call in a turn it costs one branch.
    @inline(__always)
    func scheduleFlush() {
        if !isDirty { loop.markDirty(self) }
    }

    /// Writes as much pending output as the socket takes.
    func flush() {
        while !isClosed {
            let output = pendingOutput()
            guard output.count > 0 else {
                setWatchingWrites(false)
                return
            }
            let result: IOResult<Int>
            do { result = try Posix.write(descriptor: descriptor, from: output) } catch {
                close(reason: "write failed: \(error)")
                return
            }
            switch result {
            case .wouldBlock:
                setWatchingWrites(true)
                return
            case .processed(let count):
                didWrite(count)
                if count < output.count {
                    setWatchingWrites(true)
                    return
                }
            }
        }
    }

    private func setWatchingWrites(_ on: Bool) {
        guard on != watchingWrites, !isClosed else { return }
        watchingWrites = on
        updateInterest()
    }

    /// Stops or resumes reading (the kernel then holds, and finally refuses, what the other side sends).
    func setReadingPaused(_ paused: Bool) {
        guard paused != readingPaused, !isClosed else { return }
        readingPaused = paused
        updateInterest()
    }

    private func updateInterest() {
        var interest: EpollEvents = readingPaused ? [] : .readable
        if watchingWrites { interest.insert(.writable) }
        loop.modify(descriptor, token: token, interest)
    }

    /// Best-effort: writes an ERROR frame straight to the socket before closing.
    func writeErrorNow(_ code: ErrorCode, _ reason: String) {
        Self.writeError(code, reason, to: descriptor)
    }

    /// Best-effort ERROR frame on any socket (also one refused before it became a connection).
    static func writeError(_ code: ErrorCode, _ reason: String, to descriptor: CInt) {
        let bytes = FrameParser.encode(.error, body: ErrorFrame(code: code, reason: reason).body)
        _ = bytes.withUnsafeBytes { try? Posix.write(descriptor: descriptor, from: $0) }
    }

    /// Stops watching, closes the descriptor. Subclasses release their state first and call super.
    func close(reason: String) {
        guard !isClosed else { return }
        isClosed = true
        loop.deregister(descriptor, token: token)
        Posix.close(descriptor: descriptor)
        input.clear()
    }
}
