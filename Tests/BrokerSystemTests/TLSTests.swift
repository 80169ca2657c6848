// TLS sessions on the system's OpenSSL 3, two of them talking through memory: the handshake with certificates
// the openssl tool made, the site the certificate names, what is refused and why (on both sides), pinning.
import BrokerHarness
import BrokerSystem
import Foundation
import Testing

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

@Suite(.enabled(if: TestCertificates.testsRun, "OpenSSL 3 (libssl3) and the openssl tool"))
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

    /// Last words then close_notify: the peer reads the words, then learns the session ended (not an error).
    @Test func aCloseNotifyEndsTheSessionAfterTheLastWords() throws {
        let certificates = try TestCertificates.group(sites: [1, 2])
        let server = try TLSSession(certificates.context("site1", ca: "ca"), server: true)
        let client = try TLSSession(certificates.context("site2", ca: "ca"), server: false)
        _ = handshake(client, server)
        let words = Array("ERROR: goodbye".utf8)
        try words.withUnsafeBytes { try server.write($0) }
        server.closeNotify()
        pump(from: server, to: client)
        #expect(try readAll(client).get() == words)
        #expect(client.peerClosed)
        #expect(!server.peerClosed)
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
        #expect(server.peerSHA256() == (try certificates.sha256("site2")))
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
