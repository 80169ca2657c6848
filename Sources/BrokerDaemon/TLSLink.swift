// One peer connection's TLS: the session (OpenSSL, driven through memory), the ciphertext read from the
// socket, and the ciphertext waiting for it. Both buffers are allocated once per connection and this code
// allocates nothing per message; OpenSSL itself still does (scripts/check-hot-path-allocations --tls).
import BrokerSystem
import BrokerWire

final class TLSLink {
    enum State {
        /// The handshake is under way: nothing plain passes either way.
        case handshaking
        /// Handshaken: plain frames pass both ways.
        case open
        /// The peer spoke plain text where a handshake was due.
        case plainPeer
    }

    let session: TLSSession
    let server: Bool
    var state = State.handshaking
    /// Whether the first bytes from the peer have been looked at (a plain peer's HELLO, or TLS).
    var firstBytesSeen = false
    /// Whether any plain byte has come out of the session (before, a failure is the handshake's).
    var plainReceived = false
    /// Waiting in the broker's TLS backlog: the session holds plain bytes the core has not taken yet.
    var backlogged = false
    /// The peer closed its end while plain bytes waited in the session: the core hears of the end once it has
    /// taken them (as it would every byte a plain socket held before its end).
    var endedWithBacklog = false
    /// Ciphertext read from the socket.
    let incoming: UnsafeMutableRawBufferPointer
    /// Ciphertext for the socket: bytes [start, end) are not written yet.
    let outgoing: UnsafeMutableRawBufferPointer
    var outgoingStart = 0
    var outgoingEnd = 0
    /// What a plain peer sent (at most `plainPeerLimit` bytes), read for its ERROR's reason.
    var plainPeerBytes: [UInt8] = []

    static let incomingBytes = 64 << 10
    static let outgoingBytes = 256 << 10
    /// Plain bytes encrypted at most before they are written: what one write takes, and the session's output
    /// (records add 22 bytes per 16 KiB) stays within `outgoing`.
    static let plainPerWrite = outgoingBytes - (16 << 10)
    static let plainPeerLimit = 4096

    init(_ session: TLSSession, server: Bool) {
        self.session = session
        self.server = server
        incoming = .allocate(byteCount: Self.incomingBytes, alignment: 16)
        outgoing = .allocate(byteCount: Self.outgoingBytes, alignment: 16)
    }

    deinit {
        incoming.deallocate()
        outgoing.deallocate()
    }

    /// Ciphertext not written yet.
    var unwritten: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: outgoing[outgoingStart..<outgoingEnd])
    }

    func wrote(_ count: Int) {
        outgoingStart += count
        if outgoingStart == outgoingEnd { outgoingStart = 0; outgoingEnd = 0 }
    }

    /// Moves the session's output into `outgoing` (when it is empty); whether there is anything to write.
    func takeOutput() -> Bool {
        if outgoingEnd == 0, session.outputPending > 0 {
            outgoingEnd = session.takeOutput(into: outgoing)
        }
        return outgoingEnd > outgoingStart
    }

    /// Whether the first bytes a peer sent are a repbroker frame (a plain broker's HELLO), not TLS.
    static func looksPlain(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= Wire.frameHeaderSize && bytes[0] != 0x16 && bytes[5] == Wire.frameMagic
    }

    /// The reason a plain peer gave in an ERROR frame among what it sent, if it sent one whole.
    func plainPeerReason() -> String? {
        plainPeerBytes.withUnsafeBytes { bytes -> String? in
            var offset = 0
            while offset < bytes.count,
                  let frame = try? FrameParser.next(in: UnsafeRawBufferPointer(rebasing: bytes[offset...]), maxMessage: 0) {
                if frame.type == .error, let error = try? ErrorFrame(body: frame.body) { return error.reason }
                offset += frame.totalSize
            }
            return nil
        }
    }
}
