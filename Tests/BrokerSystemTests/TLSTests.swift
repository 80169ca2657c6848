// TLS sessions on the system's OpenSSL 3, two of them talking through memory: the handshake with certificates
// the openssl tool made, the site the certificate names, what is refused and why (on both sides), pinning.
import BrokerHarness
import BrokerSystem
import Foundation
import Testing

/// A CA and site certificates made with the openssl command-line tool in a temporary directory.
final class TestCertificates {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "rbtls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func path(_ name: String) -> String { directory + "/" + name }

    @discardableResult
    func openssl(_ arguments: [String]) throws -> String { try runToEnd("/usr/bin/openssl", arguments, in: directory) }

    /// A self-signed CA: NAME.key and NAME.pem.
    func makeCA(_ name: String) throws {
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", "\(name).key", "-out", "\(name).pem", "-days", "30", "-subj", "/CN=\(name)"])
    }

    /// NAME.key and NAME.pem signed by `ca`, with `san` as its subjectAltName (nil: none).
    func makeCertificate(_ name: String, ca: String, san: String?) throws {
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"])
        var arguments = ["x509", "-req", "-in", "\(name).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key",
                         "-CAcreateserial", "-out", "\(name).pem", "-days", "30"]
        if let san {
            try "subjectAltName=\(san)\n".write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
            arguments += ["-extfile", "\(name).ext"]
        }
        try openssl(arguments)
    }

    /// NAME.key and NAME.pem signed by `ca`, naming `site`, valid only in January 2020 (openssl ca backdates).
    func makeExpiredCertificate(_ name: String, ca: String, site: Int32) throws {
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"])
        try "".write(toFile: path("index.txt"), atomically: true, encoding: .utf8)
        try "01\n".write(toFile: path("serial"), atomically: true, encoding: .utf8)
        try """
            [ca]
            default_ca = test
            [test]
            database = index.txt
            serial = serial
            new_certs_dir = .
            default_md = sha256
            policy = any
            [any]
            commonName = supplied
            [site]
            subjectAltName = URI:repbroker://site/\(site)

            """.write(toFile: path("ca.cnf"), atomically: true, encoding: .utf8)
        try openssl(["ca", "-batch", "-config", "ca.cnf", "-cert", "\(ca).pem", "-keyfile", "\(ca).key", "-in", "\(name).csr",
                     "-out", "\(name).pem", "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                     "-extensions", "site", "-notext"])
    }

    func context(_ name: String, ca: String?) throws -> TLSContext {
        try TLSContext(certificate: path("\(name).pem"), key: path("\(name).key"), ca: ca.map { path("\($0).pem") })
    }
}

/// Moves each side's output to the other until both handshakes are done or one fails; the failures.
func handshake(_ client: TLSSession, _ server: TLSSession) -> (client: TLSError?, server: TLSError?) {
    var clientError: TLSError?
    var serverError: TLSError?
    for _ in 0..<20 {
        do { _ = try client.handshake() } catch { clientError = error }
        pump(from: client, to: server)
        do { _ = try server.handshake() } catch { serverError = error }
        pump(from: server, to: client)
        if (client.handshakeDone && server.handshakeDone) || clientError != nil || serverError != nil { break }
    }
    return (clientError, serverError)
}

func pump(from: TLSSession, to: TLSSession) {
    var buffer = [UInt8](repeating: 0, count: 16_384)
    while from.outputPending > 0 {
        let count = buffer.withUnsafeMutableBytes { from.takeOutput(into: $0) }
        try? buffer.withUnsafeBytes { try to.feed(UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
    }
}

/// Everything `session` can decrypt now, or the reason it cannot.
func readAll(_ session: TLSSession) -> Result<[UInt8], TLSError> {
    var plain: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let read: Result<Int, TLSError> = buffer.withUnsafeMutableBytes { raw in Result { () throws(TLSError) in try session.read(into: raw) } }
        switch read {
        case .success(0): return .success(plain)
        case .success(let count): plain += buffer.prefix(count)
        case .failure(let error): return .failure(error)
        }
    }
}

/// Runs where OpenSSL 3 and its command-line tool are installed, and always in CI (.ci/run installs them), so
/// that CI cannot skip it.
let tlsTestsRun = ProcessInfo.processInfo.environment["CI"] != nil
    || (TLSContext.available() == nil && FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"))

@Suite(.enabled(if: tlsTestsRun, "OpenSSL 3 (libssl3) and the openssl tool"))
struct TLSTests {
    @Test func sitesOfOneCAShakeHandsOnTLS13AndExchangeData() throws {
        let certificates = try TestCertificates()
        try certificates.makeCA("ca")
        try certificates.makeCertificate("site1", ca: "ca", san: "URI:repbroker://site/1")
        try certificates.makeCertificate("site2", ca: "ca", san: "URI:repbroker://site/2")
        let server = try TLSSession(certificates.context("site1", ca: "ca"), server: true)
        let client = try TLSSession(certificates.context("site2", ca: "ca"), server: false)
        let (clientError, serverError) = handshake(client, server)
        #expect(clientError == nil && serverError == nil)
        #expect(client.handshakeDone && server.handshakeDone)
        #expect(try server.peerSite() == 2)
        #expect(try client.peerSite() == 1)
        #expect(client.description.hasPrefix("TLSv1.3 TLS_"))
        let message = Array("HELLO from site 2".utf8)
        try message.withUnsafeBytes { try client.write($0) }
        pump(from: client, to: server)
        #expect(try readAll(server).get() == message)
    }

    @Test func aCertificateFromAnotherCAIsRefusedWithAReasonOnBothSides() throws {
        let certificates = try TestCertificates()
        try certificates.makeCA("ca")
        try certificates.makeCA("other")
        try certificates.makeCertificate("site1", ca: "ca", san: "URI:repbroker://site/1")
        try certificates.makeCertificate("intruder", ca: "other", san: "URI:repbroker://site/2")
        let server = try TLSSession(certificates.context("site1", ca: "ca"), server: true)
        let client = try TLSSession(certificates.context("intruder", ca: "ca"), server: false)
        let (_, serverError) = handshake(client, server)
        #expect(serverError?.reason.contains("unable to get local issuer certificate") == true, "\(String(describing: serverError))")
        // TLS 1.3: the client finished first and learns of the refusal from the server's alert.
        pump(from: server, to: client)
        let message = Array("data that must not pass".utf8)
        try? message.withUnsafeBytes { try client.write($0) }
        pump(from: client, to: server)
        if case .success(let plain) = readAll(server) { #expect(plain.isEmpty, "nothing passes a refused session") }
        guard case .failure(let clientError) = readAll(client) else {
            Issue.record("the client was not told")
            return
        }
        #expect(clientError.reason.contains("alert"), "\(clientError)")
    }

    @Test func anExpiredCertificateIsRefusedWithAReason() throws {
        let certificates = try TestCertificates()
        try certificates.makeCA("ca")
        try certificates.makeCertificate("site1", ca: "ca", san: "URI:repbroker://site/1")
        try certificates.makeExpiredCertificate("expired", ca: "ca", site: 2)
        let server = try TLSSession(certificates.context("site1", ca: "ca"), server: true)
        let client = try TLSSession(certificates.context("expired", ca: "ca"), server: false)
        let (_, serverError) = handshake(client, server)
        #expect(serverError?.reason.contains("certificate has expired") == true, "\(String(describing: serverError))")
        #expect(!server.handshakeDone)
    }

    @Test func aCertificateThatNamesNoSiteIsSaidSo() throws {
        let certificates = try TestCertificates()
        try certificates.makeCA("ca")
        try certificates.makeCertificate("site1", ca: "ca", san: "URI:repbroker://site/1")
        try certificates.makeCertificate("anonymous", ca: "ca", san: nil)
        let server = try TLSSession(certificates.context("site1", ca: "ca"), server: true)
        let client = try TLSSession(certificates.context("anonymous", ca: "ca"), server: false)
        _ = handshake(client, server)
        #expect(server.handshakeDone)
        #expect(throws: TLSError.self) { try server.peerSite() }
        do { _ = try server.peerSite() } catch { #expect(error.reason.contains("names no site")) }
    }

    @Test func withoutACAAnyCertificatePassesAndItsPinIsItsSHA256() throws {
        let certificates = try TestCertificates()
        try certificates.makeCA("ca")
        try certificates.makeCA("other")
        try certificates.makeCertificate("site1", ca: "ca", san: "URI:repbroker://site/1")
        try certificates.makeCertificate("site2", ca: "other", san: "URI:repbroker://site/2")
        let server = try TLSSession(certificates.context("site1", ca: nil), server: true)
        let client = try TLSSession(certificates.context("site2", ca: nil), server: false)
        let (clientError, serverError) = handshake(client, server)
        #expect(clientError == nil && serverError == nil && server.handshakeDone)
        let fingerprint = try certificates.openssl(["x509", "-in", "site2.pem", "-noout", "-fingerprint", "-sha256"])
        let expected = fingerprint.split(separator: "=").last.map { $0.replacingOccurrences(of: ":", with: "") }?
            .trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        #expect(server.peerSHA256() == expected)
    }

    @Test func aMissingKeyOrAMismatchedOneIsAClearError() throws {
        let certificates = try TestCertificates()
        try certificates.makeCA("ca")
        try certificates.makeCertificate("site1", ca: "ca", san: "URI:repbroker://site/1")
        #expect(throws: TLSError.self) { try TLSContext(certificate: certificates.path("site1.pem"), key: "/nonexistent.key", ca: nil) }
        do {
            _ = try TLSContext(certificate: certificates.path("site1.pem"), key: certificates.path("ca.key"), ca: nil)
            Issue.record("a key of another certificate was accepted")
        } catch {
            #expect(error.reason.contains("ca.key (for the certificate") && error.reason.contains("mismatch"), "\(error)")
        }
    }
}
