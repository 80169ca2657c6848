// The client's side of the shared-memory rings: it produces into the to-broker ring (under the client's
// write lock, so there is one producer) and its reader thread consumes the to-client ring, sleeping in poll
// on its doorbell and the socket only after the ring is empty and it has said so in the ring.
import BrokerSystem
import BrokerWire

final class ClientRingSide: @unchecked Sendable {
    let segment: SharedSegment
    let writer: RingWriter
    let reader: RingReader
    /// Rung to wake the broker's event loop.
    let brokerDoorbell: EventFd
    /// The broker rings it when the to-client ring has records or the to-broker ring has room.
    let clientDoorbell: EventFd
    /// The to-client ring reached a MARK before its socket frame arrived.
    var awaitingSocketMessage = false
    let scratch = ByteBuffer(capacity: 4096)

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
}
