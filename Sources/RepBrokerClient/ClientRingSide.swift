// The client's side of the shared-memory rings. The to-broker ring has one producer: whichever thread
// sends, holding the client's write lock. The to-client ring has one consumer: the application thread in
// receive, receiveAll or nextEvent (one at a time; see ClientReceive.swift), which blocks on the data
// doorbell itself. The reader thread never touches either ring.
import BrokerSystem
import BrokerWire
#if canImport(Glibc)
import Glibc
#endif

final class ClientRingSide: @unchecked Sendable {
    let segment: SharedSegment
    /// Producer side of the to-broker ring; used only with the client's write lock held.
    let writer: RingWriter
    /// Consumer side of the to-client ring; used only by the receiving thread.
    let reader: RingReader
    /// Rung to wake the broker's event loop (records to read, or room made in the to-client ring).
    let brokerDoorbell: EventFd
    /// The broker rings it when the to-client ring has records and the receiver said it sleeps.
    let dataDoorbell: EventFd
    /// The broker rings it when the to-broker ring has room and the sender said it waits; the reader thread
    /// and `close` ring it too, so that a waiting sender sees the connection fail.
    let roomDoorbell: EventFd
    /// The receiving thread's: joins a message that came in parts.
    let assembler = FrameAssembler()
    /// The sending thread's (write lock held): a message too large for one record, gathered before it is
    /// written in parts.
    let largeFrame = ByteBuffer(capacity: 4096)
    /// Set by the receiving thread when it found the ring corrupt: it reads this ring no more.
    var isCorrupt = false
    /// The broker's message limit (control + rec) for this connection.
    let maxMessage: Int

    /// Maps what came with WELCOME: a sealed segment and three eventfds. Takes ownership of the descriptors.
    init(ringBytes: Int, maxMessage: Int, descriptors: [OwnedDescriptor]) throws {
        self.maxMessage = maxMessage
        guard descriptors.count == 4 else {
            throw BrokerClientError.protocolError("WELCOME offered rings with \(descriptors.count) descriptors, not 4")
        }
        brokerDoorbell = EventFd(adopting: descriptors[1])
        dataDoorbell = EventFd(adopting: descriptors[2])
        roomDoorbell = EventFd(adopting: descriptors[3])
        let size = RingLayout.segmentBytes(ringBytes: ringBytes)
        // The mapping outlives the memfd, closed when `descriptors` goes.
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

    /// Hands the space of the records read back to the broker, waking it if it waits for room.
    @inline(__always)
    func release() {
        reader.release()
        if reader.producerNeedsWake() { brokerDoorbell.signal() }
    }

    /// Whether the to-client ring holds records not yet read.
    var hasRecords: Bool { reader.hasRecords }
}
