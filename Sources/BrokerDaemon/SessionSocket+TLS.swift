// A peer connection over TLS: ciphertext from the socket goes into the session, plain bytes out of it into
// the core's input (at `readSpace()`, as a plain read would put them); the core's output is encrypted a
// buffer's worth at a time, each written with one write. Before the handshake is done nothing plain passes; after
// it, the peer's certificate must name a site (or match a pin), and its HELLO must name the same one.
import BrokerCore
import BrokerSystem
import BrokerWire

extension SessionSocket {
    /// A dialled connection is up: the ClientHello goes out.
    func startHandshake(_ tls: TLSLink) {
        advanceHandshake(tls)
        if !session.isClosed { flush() }
    }

    /// Reads while each read fills the buffer, up to the session's reads per event and the pass's budget.
    func readAvailable(through tls: TLSLink) {
        var reads = session.readsPerEvent
        while !session.isClosed {
            let result: IOResult<Int>
            do { result = try Posix.read(descriptor: descriptor.number, into: tls.incoming) } catch {
                return broker.core.failed(session, reason: "read failed: \(error)")
            }
            guard case .processed(let count) = result else { return }
            guard count > 0 else { return endOfInput(tls) }
            broker.loop.readBudget -= count
            guard take(UnsafeRawBufferPointer(rebasing: tls.incoming[..<count]), tls) else { return }
            if count < tls.incoming.count || readingPaused || reads <= 1 || broker.loop.readBudget <= 0 { return }
            reads -= 1
        }
    }

    /// Handles bytes read from the socket; false once the session closed.
    private func take(_ bytes: UnsafeRawBufferPointer, _ tls: TLSLink) -> Bool {
        if !tls.firstBytesSeen {
            tls.firstBytesSeen = true
            if TLSLink.looksPlain(bytes) { tls.state = .plainPeer }
        }
        if tls.state == .plainPeer {
            heardPlainPeer(bytes, tls, ended: false)
            return !session.isClosed
        }
        do { try tls.session.feed(bytes) } catch {
            broker.core.failed(session, reason: "TLS: \(error)")
            return false
        }
        if tls.state == .handshaking {
            advanceHandshake(tls)
            if session.isClosed { return false }
            flush()  // the handshake's next flight, and the core's HELLO once it is done
            if session.isClosed || tls.state == .handshaking { return !session.isClosed }
        }
        drain(tls)
        return !session.isClosed
    }

    /// Runs the handshake as far as the bytes in allow; once it is done, checks the peer's certificate.
    private func advanceHandshake(_ tls: TLSLink) {
        do {
            guard try tls.session.handshake() else { return }
        } catch {
            writeBestEffort(tls)  // the alert that says why, where OpenSSL made one
            return broker.core.peerTLSRefused(session, reason: error.reason)
        }
        tls.state = .open
        guard let peerTLS = broker.peerTLS else { return }
        switch peerTLS.certifiedSite(of: tls.session) {
        case .success(let site):
            broker.core.peerCertified(session, site: site, security: tls.session.description)
        case .failure(let error):
            broker.core.peerTLSRefused(session, reason: error.reason)
        }
    }

    /// Hands the core every plain byte the session holds, until the core holds its input or reading pauses
    /// (then the broker's backlog hands over the rest when it can be taken: no socket event will say so).
    func drain(_ tls: TLSLink) {
        tls.backlogged = false
        while !session.isClosed {
            if readingPaused || session.inputHeld { return broker.backlogTLS(self, tls) }
            let count: Int
            do { count = try tls.session.read(into: session.readSpace()) } catch {
                // Before any plain byte came out, the handshake failed (the peer refused this end's certificate:
                // TLS 1.3 says so after the client's handshake is done); after, the stream was corrupted or cut.
                if tls.plainReceived { return broker.core.failed(session, reason: error.reason) }
                return broker.core.peerTLSRefused(session, reason: error.reason)
            }
            guard count > 0 else {
                // The peer's close_notify, or its end of the stream once the backlog was taken: as a plain end.
                if tls.session.peerClosed || tls.endedWithBacklog { broker.core.endOfInput(session) }
                return
            }
            tls.plainReceived = true
            broker.core.received(session, bytes: count)
        }
    }

    private func endOfInput(_ tls: TLSLink) {
        switch tls.state {
        case .plainPeer: heardPlainPeer(UnsafeRawBufferPointer(start: nil, count: 0), tls, ended: true)
        case .handshaking:
            // Not a refusal of this end's TLS: a duplicate connection closed, or a peer stopped (a refusal comes as an
            // alert, which the handshake reports).
            broker.core.failed(session, reason: "the peer closed the connection during the TLS handshake")
        case .open:
            drain(tls)
            if tls.backlogged { tls.endedWithBacklog = true } else if !session.isClosed { broker.core.endOfInput(session) }
        }
    }

    /// A peer that answered in plain text: it has no TLS. An accepting broker says so in plain text (the peer
    /// reads it as a refusal); a dialling one reads on until the peer's own refusal (its ERROR) or the end.
    private func heardPlainPeer(_ bytes: UnsafeRawBufferPointer, _ tls: TLSLink, ended: Bool) {
        let refusal = "the peer sent plain text: this broker requires TLS on peer links (it has --tls-cert), the "
            + "peer has none; every broker of the group needs the same choice"
        if tls.server { return broker.core.peerTLSRefused(session, reason: refusal) }
        tls.plainPeerBytes.append(contentsOf: bytes.prefix(TLSLink.plainPeerLimit - tls.plainPeerBytes.count))
        if let reason = tls.plainPeerReason() {
            return broker.core.peerTLSRefused(session, reason: "\(refusal) (it said: \(reason))")
        }
        if ended || tls.plainPeerBytes.count >= TLSLink.plainPeerLimit {
            broker.core.peerTLSRefused(session, reason: refusal)
        }
    }

    /// Writes the ciphertext waiting, then encrypts the core's output a buffer's worth at a time and writes it,
    /// until the core has no more or the socket takes no more.
    func flush(through tls: TLSLink) {
        while !session.isClosed {
            if tls.takeOutput() {
                let result: IOResult<Int>
                do { result = try Posix.write(descriptor: descriptor.number, from: tls.unwritten) } catch {
                    return broker.core.failed(session, reason: "write failed: \(error)")
                }
                guard case .processed(let count) = result else { return setWatchingWrites(true) }
                let whole = count == tls.unwritten.count
                tls.wrote(count)
                if !whole { return setWatchingWrites(true) }
                continue
            }
            guard tls.state == .open else { return setWatchingWrites(false) }
            // Encrypt up to a buffer's worth of the core's output, then write it at the top of the loop.
            var encrypted = 0
            while encrypted < TLSLink.plainPerWrite {
                let output = session.pendingOutput()
                guard output.count > 0 else { break }
                let count = min(output.count, TLSLink.plainPerWrite - encrypted)
                do { try tls.session.write(UnsafeRawBufferPointer(rebasing: output[..<count])) } catch {
                    return broker.core.failed(session, reason: error.reason)
                }
                session.didWrite(count)
                encrypted += count
            }
            if encrypted == 0 { return setWatchingWrites(false) }
        }
    }

    /// The last words before the socket closes (best effort, as without TLS): encrypted with a close_notify
    /// once the handshake is done, in plain text to a plain peer, and otherwise only the alert OpenSSL made.
    func sayLastWords(_ lastWords: [UInt8], through tls: TLSLink) {
        switch tls.state {
        case .open:
            if !lastWords.isEmpty { _ = lastWords.withUnsafeBytes { try? tls.session.write($0) } }
            tls.session.closeNotify()
        case .plainPeer:
            if !lastWords.isEmpty {
                _ = lastWords.withUnsafeBytes { try? Posix.write(descriptor: descriptor.number, from: $0) }
            }
            return
        case .handshaking:
            break
        }
        writeBestEffort(tls)
    }

    /// Writes what the session has for the socket, as far as the socket takes it now.
    private func writeBestEffort(_ tls: TLSLink) {
        while tls.takeOutput() {
            guard case .processed(let count)? = try? Posix.write(descriptor: descriptor.number, from: tls.unwritten),
                  count > 0 else { return }
            tls.wrote(count)
        }
    }
}
