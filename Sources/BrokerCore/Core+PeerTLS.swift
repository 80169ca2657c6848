// What the shell tells the core of a peer connection's TLS: the site its certificate names once the
// handshake is done, or why the shell refuses it. The core sees the same plain frames with TLS or without.
import BrokerWire

extension Core {
    /// The TLS handshake of `session` is done and its certificate names `site` (by its SAN, or by the pin it
    /// matches); `security` is "TLSv1.3 <cipher>". The peer's HELLO must then name the same site.
    public func peerCertified(_ session: Session, site: Int32, security: String) {
        guard let connection = session as? PeerSession, !connection.isClosed else { return }
        connection.certifiedSite = site
        connection.security = security
    }

    /// The shell refuses a peer connection's TLS: a handshake that failed, a certificate that names no site or
    /// matches no pin, a peer without TLS. Counted and logged; the reason goes to the peer where the shell
    /// can still send it (in the session, or in plain text to a plain peer).
    public func peerTLSRefused(_ session: Session, reason: String) {
        guard let connection = session as? PeerSession, !connection.isClosed else { return }
        counters.tlsFailures += 1
        connection.reject(.tls, reason)
    }
}
