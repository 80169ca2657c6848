// The client's side of the shared-memory rings. It produces into the to-broker ring under the client's
// write lock (so there is one producer). The to-client ring has one consumer at a time, whoever holds
// `consumerLock`: an application thread in receiveAll, which hands messages to its callback without a
// thread hop, or else the reader thread, which moves them to the inbox. Messages too large for the ring
// come by the socket; the reader thread sets them beside the ring, and the consumer takes each at the MARK
// that holds its place. Only the reader thread sleeps on the doorbell (see ClientReaderRings.swift).
import BrokerSystem
import BrokerWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

final class ClientRingSide: @unchecked Sendable {
    let segment: SharedSegment
    let writer: RingWriter
    let reader: RingReader
    /// Rung to wake the broker's event loop.
    let brokerDoorbell: EventFd
    /// The broker rings it when the to-client ring has records or the to-broker ring has room; an
    /// application thread rings it to call the reader thread back from yielding.
    let clientDoorbell: EventFd
    /// Held while consuming the to-client ring; guards `reader`, changes to `awaitingSocketMessage`, and
    /// `staging`.
    let consumerLock = ConditionLock()
    /// The to-client ring reached a MARK before its socket frame arrived (readable from any thread).
    var awaitingSocketMessage: Bool {
        get { awaitingFlag.load(ordering: .acquiring) }
        set { awaitingFlag.store(newValue, ordering: .releasing) }
    }
    private let awaitingFlag = Atomic<Bool>(false)
    /// Why an application thread found the ring unusable; the reader thread then drops the connection.
    private let failure = Mutex<String?>(nil)
    /// Frames from one drain that go to the inbox (site events; messages when the reader thread drains).
    let staging = ByteBuffer(capacity: 64 << 10)
    /// A message being handed to a receiveAll callback (its copy: the ring's space is released meanwhile),
    /// and the socket message being taken at its MARK.
    let viewCopy = ByteBuffer(capacity: 4096)
    let socketMessage = ByteBuffer(capacity: 4096)
    /// MESSAGE frames that came by the socket (too large for the ring), in order, each waiting for the
    /// consumer to reach the MARK that holds its place; the reader thread adds them without the consumer
    /// lock, so a consumer that waits for the broker (inside a callback) never waits on the reader thread.
    private let socketMessagesLock = ConditionLock()
    private let socketMessages = ByteBuffer(capacity: 4096)
    private let socketMessageCount = Atomic<Int>(0)
    /// When an application thread last drained the ring itself (monotonic ns): the reader thread leaves the
    /// ring to it for `ClientRingSide.yieldNanoseconds` after that.
    let lastDirectDrain = Atomic<UInt64>(0)
    /// The reader thread waits in a short poll without saying it sleeps, leaving the ring to the application.
    let readerYielding = Atomic<Bool>(false)
    /// The reader thread found the ring's records held by a callback that runs long: the application's drain
    /// stops after the current callback and leaves the ring to it (another thread may wait for a result).
    let consumerWanted = Atomic<Bool>(false)
    /// The application thread draining the ring directly (pthread id), 0 when none.
    let directDrainer = Atomic<UInt>(0)
    /// Set (consumer lock held) when that thread, waiting inside its callback, moved records to the inbox:
    /// its direct drain then stops, so that the inbox's older messages come first.
    var drainedWhileCalledBack = false
    static let yieldNanoseconds: UInt64 = 1_000_000

    /// Maps what came with WELCOME: a sealed segment and two eventfds. Takes ownership of the descriptors.
    init(ringBytes: Int, descriptors: [CInt]) throws {
        guard descriptors.count == 3 else {
            for fd in descriptors { Posix.close(descriptor: fd) }
            throw BrokerClientError.protocolError("WELCOME offered rings with \(descriptors.count) descriptors, not 3")
        }
        brokerDoorbell = EventFd(adopting: descriptors[1])
        clientDoorbell = EventFd(adopting: descriptors[2])
        defer { Posix.close(descriptor: descriptors[0]) }
        let size = RingLayout.segmentBytes(ringBytes: ringBytes)
        segment = try SharedSegment.map(received: descriptors[0], expectedSize: size)
        guard try RingLayout.validate(segment.base, size: size) == ringBytes else {
            throw BrokerClientError.protocolError("segment header disagrees with WELCOME")
        }
        let rings = RingLayout.rings(segment.base, ringBytes: ringBytes)
        writer = RingWriter(rings.toBroker)
        reader = RingReader(rings.toClient)
    }

    /// Publishes what was written and wakes the broker if it sleeps.
    @inline(__always)
    func publish() {
        writer.publish()
        if writer.consumerNeedsWake() { brokerDoorbell.signal() }
    }

    /// Whether the to-client ring holds records no consumer has released; safe from any thread.
    var hasRecords: Bool { reader.ring.hasUnreleasedRecords }

    /// Whether a consumer can make progress now: records in the ring, or the socket message a MARK waits for.
    var hasWork: Bool {
        awaitingSocketMessage ? socketMessageCount.load(ordering: .acquiring) > 0 : hasRecords
    }

    /// The reader thread's part: a checked MESSAGE frame that came by the socket.
    func addSocketMessage(_ frame: UnsafeRawBufferPointer) {
        socketMessagesLock.withLock {
            socketMessages.append(frame)
            socketMessageCount.add(1, ordering: .releasing)
        }
    }

    /// Consumer lock held: the oldest socket message, copied to `socketMessage`; nil when none came yet.
    func takeSocketMessage() -> Frame? {
        socketMessagesLock.withLock {
            guard let size = FrameParser.pendingFrameSize(in: socketMessages.readable) else { return nil }
            socketMessage.reset()
            socketMessage.append(UnsafeRawBufferPointer(rebasing: socketMessages.readable[..<size]))
            socketMessages.consume(size)
            socketMessageCount.subtract(1, ordering: .releasing)
            // Checked when it was added.
            return try? FrameParser.next(in: socketMessage.readable, maxMessage: Int.max - 64)
        }
    }

    /// An application thread found the ring corrupt: the reader thread is told to drop the connection.
    func fail(_ reason: String) {
        failure.withLock { $0 = $0 ?? reason }
        clientDoorbell.signal()
    }

    var failureReason: String? { failure.withLock { $0 } }

    /// Whether the calling thread is the one draining the ring directly (so it is inside receiveAll's callback).
    var isDrainedByCallingThread: Bool { directDrainer.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Whether an application thread drained the ring within the yield window.
    func applicationDrainsRing(now: UInt64) -> Bool {
        now &- lastDirectDrain.load(ordering: .relaxed) < Self.yieldNanoseconds
    }
}
