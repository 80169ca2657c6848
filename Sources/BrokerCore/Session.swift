// A connection as the core sees it: bytes the shell read, parsed in place into frames, and bytes the shell is
// to write. A session never touches its socket: the shell reads into `input` and calls `Core.received`, asks
// `pendingOutput` what to write and reports `didWrite`. A session closes by telling the core, which asks the
// shell (`CoreAction.close`) to close the socket.
import BrokerWire

public class Session {
    public let id: ConnectionID
    /// The core outlives every session it holds.
    unowned let core: Core
    /// What the shell read and the core has not parsed yet; frames are parsed where they lie.
    public let input: ByteBuffer
    var maxMessage: Int
    // Unchecked exclusivity: per-message state of the loop's thread (scripts/compare-builds ipc, 64 B: the
    // runtime's access checks took about a tenth of the broker's cycles).
    @exclusivity(unchecked) var isDirty = false
    @exclusivity(unchecked) public private(set) var isClosed = false
    /// The frame at the front of `input` waits, and those after it (a producer whose group became congested
    /// partway through what one read brought: the frames are routed once the group has room, not dropped).
    @exclusivity(unchecked) public internal(set) var inputHeld = false
    /// The shell's object for this session's socket (the simulator's for its end of a pipe).
    public var attachment: AnyObject?
    /// Bytes kept free for a read: the buffer is kept at least this large.
    public static let minimumRead = 64 << 10

    init(id: ConnectionID, core: Core, maxMessage: Int, inputCapacity: Int = 128 << 10) {
        self.id = id
        self.core = core
        self.maxMessage = maxMessage
        input = ByteBuffer(capacity: inputCapacity)
    }

    /// Reads per readiness event the shell may do while each fills the space offered (one; peer links more).
    public var readsPerEvent: Int { 1 }

    /// Room for the next read: a whole pending frame (its length is known from its header), and at least
    /// `minimumRead` bytes.
    public func readSpace() -> UnsafeMutableRawBufferPointer {
        if let needed = FrameParser.pendingFrameSize(in: input.readable), needed > input.readableBytes {
            input.reserve(needed - input.readableBytes)
        }
        input.reserve(Self.minimumRead)
        return input.writable
    }

    /// One complete frame; its body points into `input` and is valid only during the call.
    func handleFrame(_ frame: Frame) throws(WireError) {
        throw .unexpected(type: frame.type, state: "on this connection")
    }

    /// A bad frame: subclasses count it, tell the other side and close.
    func protocolError(_ error: WireError) {
        close(reason: error.description)
    }

    /// The shell read the end of the stream: everything the other side sent by the socket has been handled.
    func endOfInput() { close(reason: "closed by the other side") }

    /// Before the shell writes: a client's queued frames go into its to-client ring and are published. True
    /// when its receiver said it sleeps: the shell rings its data doorbell.
    public func publishRing() -> Bool { false }

    /// The next bytes to write, empty when there is nothing.
    public func pendingOutput() -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    /// `count` bytes of `pendingOutput()` were written.
    public func didWrite(_ count: Int) {}

    /// Asks for a flush at the end of this pass; after the first call in a pass it costs one branch.
    @inline(__always)
    func scheduleFlush() {
        if !isDirty { core.markDirty(self) }
    }

    /// Forgets the session and asks the shell to close its socket, after writing `lastWords` if it can.
    /// Subclasses release their state first and call super.
    func close(reason: String, lastWords: [UInt8] = []) {
        guard !isClosed else { return }
        isClosed = true
        input.clear()
        core.sessionClosed(self, lastWords: lastWords)
    }

    /// An ERROR frame, for `close(reason:lastWords:)`.
    static func errorFrame(_ code: ErrorCode, _ reason: String) -> [UInt8] {
        FrameParser.encode(.error, body: ErrorFrame(code: code, reason: reason).body)
    }
}
