// The core's part of TLS on peer links, driven in-process: a HELLO must name the site the peer's certificate
// names; a plain broker that receives a TLS ClientHello says why it refuses it; the link shows its security.
@testable import BrokerCore
import BrokerWire
import Testing

/// Keeps log lines for the checks.
final class KeptLines: LogSink, @unchecked Sendable {
    var lines: [String] = []
    func write(_ level: LogLevel, label: String, _ message: String, _ metadata: Logger.Metadata) {
        lines.append(Logger.line(timestamp: "0", level, label: label, message, metadata))
    }
}

@Suite struct PeerTLSTests {
    /// A core of site 1 with site 2 as a configured peer, and one accepted connection.
    func coreWithAcceptedPeer() -> (Core, Session, KeptLines) {
        var config = CoreConfig(siteID: 1)
        config.peers = [(2, "127.0.0.1:7002")]
        let lines = KeptLines()
        let core = Core(config: config, now: 1_000_000_000, incarnation: 7, seed: 9,
                        logger: Logger(label: "test", level: .debug, sink: lines))
        core.takeActions { _ in }
        return (core, core.openAcceptedPeer(), lines)
    }

    /// Puts `bytes` where the shell's read would and hands them to the core.
    func receive(_ bytes: [UInt8], _ session: Session, _ core: Core) {
        let space = session.readSpace()
        bytes.withUnsafeBytes { space.copyMemory(from: $0) }
        core.received(session, bytes: bytes.count)
    }

    /// The ERROR a close action carried: its code and reason.
    func closingError(_ core: Core, _ session: Session) -> (code: UInt32, reason: String)? {
        var error: (UInt32, String)?
        core.takeActions { action in
            guard case .close(let id, let lastWords) = action, id == session.id, !lastWords.isEmpty else { return }
            lastWords.withUnsafeBytes { bytes in
                if let frame = try? FrameParser.next(in: bytes, maxMessage: 0), frame.type == .error,
                   let body = try? ErrorFrame(body: frame.body) {
                    error = (body.code, body.reason)
                }
            }
        }
        return error
    }

    func hello(site: Int32) -> [UInt8] {
        FrameParser.encode(.hello, body: HelloFrame(siteID: site, incarnation: 3).body)
    }

    @Test func aHelloNamingAnotherSiteThanTheCertificateIsRefused() throws {
        let (core, session, lines) = coreWithAcceptedPeer()
        core.peerCertified(session, site: 3, security: "TLSv1.3 TLS_AES_256_GCM_SHA384")
        receive(hello(site: 2), session, core)
        let error = try #require(closingError(core, session))
        #expect(error.code == ErrorCode.tls.rawValue)
        #expect(error.reason == "the peer's HELLO says site 2 and its certificate names site 3")
        #expect(session.isClosed)
        #expect(lines.lines.contains { $0.contains("peer connection refused") && $0.contains("names site 3") })
        #expect(core.stats(pid: 0, acceptFailures: 0).totals.tlsFailures == 1)
        #expect(core.stats(pid: 0, acceptFailures: 0).peers.allSatisfy { $0.state != .connected })
    }

    @Test func aHelloNamingTheCertifiedSiteLinksAndTheLinkShowsItsSecurity() throws {
        let (core, session, _) = coreWithAcceptedPeer()
        core.peerCertified(session, site: 2, security: "TLSv1.3 TLS_AES_256_GCM_SHA384")
        receive(hello(site: 2), session, core)
        #expect(closingError(core, session) == nil)
        #expect(!session.isClosed)
        // Site 1 arbitrates (the lower id): the connection is the link at once.
        let peer = try #require(core.stats(pid: 0, acceptFailures: 0).peers.first)
        #expect(peer.state == .connected)
        #expect(peer.tls == "TLSv1.3 TLS_AES_256_GCM_SHA384")
    }

    @Test func aPlainLinkShowsPlain() throws {
        let (core, session, _) = coreWithAcceptedPeer()
        #expect(core.stats(pid: 0, acceptFailures: 0).peers.first?.tls == nil, "never up: no security to show")
        receive(hello(site: 2), session, core)
        #expect(core.stats(pid: 0, acceptFailures: 0).peers.first?.tls == "plain")
    }

    /// A plain broker that reads a TLS ClientHello where a HELLO was due says that the peer has TLS and it has
    /// not, rather than "bad frame"; it is counted as a TLS failure, not a bad frame.
    @Test func aClientHelloAtAPlainBrokerIsRefusedAsTLSMismatch() throws {
        let (core, session, _) = coreWithAcceptedPeer()
        // A TLS record header (handshake, TLS 1.0 record version, length 0x00f8), then ClientHello's type.
        receive([0x16, 0x03, 0x01, 0x00, 0xF8, 0x01, 0x00, 0x00, 0xF4, 0x03, 0x03], session, core)
        let error = try #require(closingError(core, session))
        #expect(error.code == ErrorCode.tls.rawValue)
        #expect(error.reason.contains("the peer speaks TLS and this broker has no TLS configured"))
        let totals = core.stats(pid: 0, acceptFailures: 0).totals
        #expect(totals.tlsFailures == 1 && totals.badFrames == 0)
    }

    @Test func otherGarbageIsStillABadFrame() throws {
        let (core, session, _) = coreWithAcceptedPeer()
        receive(Array("GET / HTTP/1.0\r\n\r\n".utf8), session, core)
        let error = try #require(closingError(core, session))
        #expect(error.code != ErrorCode.tls.rawValue)
        let totals = core.stats(pid: 0, acceptFailures: 0).totals
        #expect(totals.tlsFailures == 0 && totals.badFrames == 1)
    }

    @Test func theShellsRefusalIsSentAsATLSError() throws {
        let (core, session, _) = coreWithAcceptedPeer()
        core.peerTLSRefused(session, reason: "the peer's certificate (sha256 ab) matches no --tls-pin")
        let error = try #require(closingError(core, session))
        #expect(error.code == ErrorCode.tls.rawValue && error.reason.contains("matches no --tls-pin"))
        #expect(core.stats(pid: 0, acceptFailures: 0).totals.tlsFailures == 1)
    }
}
