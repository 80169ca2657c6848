// The broker's TLS for peer links: the context every new connection's session is made from (replaced by a
// reload; sessions already made keep theirs), and the check of a peer's certificate once its handshake is done.
import BrokerSystem

final class PeerTLS {
    let settings: TLSSettings
    private(set) var context: TLSContext

    /// Loads OpenSSL and the PEM files: a clear error at start when either cannot be had.
    init(_ settings: TLSSettings) throws(TLSError) {
        self.settings = settings
        context = try settings.makeContext()
    }

    /// Reads the files again; new connections use them, links up keep their sessions. On failure the old
    /// context stays and the reason is thrown.
    func reload() throws(TLSError) {
        context = try settings.makeContext()
    }

    /// A session for a connection: `server` for an accepted one.
    func session(server: Bool) throws(TLSError) -> TLSSession {
        try TLSSession(context, server: server)
    }

    /// The site a handshaken peer's certificate stands for, or why it is refused. With a CA the chain has been
    /// verified and the certificate names the site (SAN URI repbroker://site/ID), whose pin, if it has one,
    /// must match too; with pins alone, the site is the one whose pin the certificate matches.
    func certifiedSite(of session: TLSSession) -> Result<Int32, TLSError> {
        let digest = session.peerSHA256()
        if settings.ca != nil {
            let site: Int32
            do { site = try session.peerSite() } catch { return .failure(error) }
            if let pin = settings.pins[site], pin != digest {
                return .failure(TLSError("the certificate of site \(site) (sha256 \(digest ?? "-")) does not match its --tls-pin"))
            }
            return .success(site)
        }
        guard let digest, let site = settings.pins.first(where: { $0.value == digest })?.key else {
            return .failure(TLSError("the peer's certificate (sha256 \(digest ?? "-")) matches no --tls-pin"))
        }
        return .success(site)
    }
}
