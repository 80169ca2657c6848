// TLS on peer links: the PEM files and pins from --tls-cert, --tls-key, --tls-ca and --tls-pin (config keys
// tls_cert, tls_key, tls_ca, tls_pins), checked before anything starts.
import BrokerSystem
#if canImport(Glibc)
import Glibc
#endif

/// This site's certificate and key, and how a peer's certificate is trusted: a CA its chain verifies
/// against (the site it names in a SAN URI repbroker://site/ID), pins (the SHA-256 of each site's
/// certificate), or both (the CA, and a pin where a site has one).
public struct TLSSettings: Equatable, Sendable {
    public var certificate: String
    public var key: String
    public var ca: String?
    /// SHA-256 of each pinned site's certificate (DER), 64 lowercase hex digits.
    public var pins: [Int32: String]

    public init(certificate: String, key: String, ca: String? = nil, pins: [Int32: String] = [:]) {
        self.certificate = certificate
        self.key = key
        self.ca = ca
        self.pins = pins
    }

    /// Reads the four settings together; nil when none is given.
    static func from(certificate: String?, key: String?, ca: String?, pins: [String]) throws(UsageError) -> TLSSettings? {
        guard certificate != nil || key != nil || ca != nil || !pins.isEmpty else { return nil }
        guard let certificate, let key else {
            throw UsageError("TLS needs both --tls-cert and --tls-key (this site's certificate and its private key)")
        }
        var pinned: [Int32: String] = [:]
        for spec in pins {
            let (site, digest) = try parsePin(spec)
            guard pinned.updateValue(digest, forKey: site) == nil else { throw UsageError("--tls-pin: site \(site) is pinned twice") }
        }
        guard ca != nil || !pinned.isEmpty else {
            throw UsageError("TLS needs --tls-ca (the CA that signs every site's certificate) or --tls-pin for each peer")
        }
        return TLSSettings(certificate: certificate, key: key, ca: ca, pins: pinned)
    }

    /// "ID=SHA256": the site and the digest in lowercase hex (colons, as `openssl x509 -fingerprint` prints
    /// them, are allowed).
    static func parsePin(_ spec: String) throws(UsageError) -> (Int32, String) {
        guard let equals = spec.firstIndex(of: "="), let site = Int32(spec[..<equals]), site > 0 else {
            throw UsageError("--tls-pin takes ID=SHA256 (a positive site id), not '\(spec)'")
        }
        let digest = spec[spec.index(after: equals)...].filter { $0 != ":" }.lowercased()
        guard digest.count == 64, digest.allSatisfy({ $0.isHexDigit }) else {
            throw UsageError("--tls-pin \(site): the SHA-256 must be 64 hex digits (openssl x509 -noout -fingerprint -sha256), not '\(spec[spec.index(after: equals)...])'")
        }
        return (site, digest)
    }

    /// A context with the files as they are now (at start, and again on reload).
    func makeContext() throws(TLSError) -> TLSContext {
        for (what, path) in [("certificate", certificate), ("key", key), ("CA", ca)] {
            guard let path else { continue }
            guard let file = fopen(path, "r") else {
                throw TLSError("cannot read the \(what) \(path): \(String(cString: strerror(errno)))")
            }
            fclose(file)
        }
        return try TLSContext(certificate: certificate, key: key, ca: ca)
    }
}
