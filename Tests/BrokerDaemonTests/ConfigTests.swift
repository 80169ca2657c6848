// repbrokerd settings: defaults, the JSON file, flags over the file, and clear errors for bad values.
@testable import BrokerDaemon
import BrokerSystem
import Foundation
import Testing

@Suite struct ConfigTests {
    func parse(_ words: [String]) throws -> BrokerConfig {
        try BrokerConfig.from(arguments: ParsedArguments(words, valued: BrokerConfig.valuedOptions,
                                                             flagNames: BrokerConfig.flagNames))
    }

    @Test func onlySiteIDGivesALoneSiteWithDefaultPaths() throws {
        let config = try parse(["--site-id", "7"])
        #expect(config.siteID == 7)
        #expect(config.listen == nil && config.peers.isEmpty)
        #expect(config.socketPath == BrokerConfig.defaultSocketPath)
        #expect(config.adminSocketPath == BrokerConfig.defaultAdminSocketPath)
        #expect(config.heartbeatMilliseconds == 1000 && config.peerQueueBytes == 64 << 20)
        #expect(config.inboundQueueBytes == 4 << 20 && config.socketMode == 0o660)
        _ = try config.validate()
    }

    /// The loop's idle strategy: backoff by default, from the file's `idle_strategy`, the flag over the file, and
    /// an unknown name refused with the names it takes.
    @Test func theIdleStrategyComesFromTheFlagOrTheFile() throws {
        #expect(try parse(["--site-id", "1"]).idleStrategy == .backoff)
        #expect(try parse(["--site-id", "1", "--idle-strategy", "spin"]).idleStrategy == .spin)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rb-idle-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"site_id": 1, "idle_strategy": "block"}"#.utf8).write(to: file)
        #expect(try parse(["--config", file.path]).idleStrategy == .block)
        #expect(try parse(["--config", file.path, "--idle-strategy", "backoff"]).idleStrategy == .backoff)
        do {
            _ = try parse(["--site-id", "1", "--idle-strategy", "nap"])
            Issue.record("an unknown idle strategy was accepted")
        } catch {
            #expect("\(error)".contains("backoff, spin or block"), "\(error)")
        }
    }

    @Test func flagsOverrideTheFile() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rb-config-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data("""
            {"site_id": 3, "listen": "127.0.0.1:7003", "log_level": "debug", "heartbeat_ms": 250,
             "peers": [{"site_id": 1, "address": "127.0.0.1:7001"}, {"site_id": 2, "address": "127.0.0.1:7002"}],
             "socket": "/tmp/from-file.sock", "peer_queue_bytes": 1048576}
            """.utf8).write(to: file)
        let config = try parse(["--config", file.path, "--site-id", "4", "--peer", "2=127.0.0.1:9002",
                                "--heartbeat-ms", "100"])
        #expect(config.siteID == 4)
        #expect(config.listen == "127.0.0.1:7003")
        #expect(config.logLevel == .debug)
        #expect(config.heartbeatMilliseconds == 100)
        #expect(config.peerQueueBytes == 1 << 20)
        #expect(config.socketPath == "/tmp/from-file.sock")
        #expect(config.peers.sorted { $0.siteID < $1.siteID }
                    == [PeerConfig(siteID: 1, address: "127.0.0.1:7001"), PeerConfig(siteID: 2, address: "127.0.0.1:9002")])
        try config.validate()
        #expect(config.coreConfig(maxClients: 8).peers.map(\.siteID).sorted() == [1, 2])
    }

    @Test(arguments: [
        (["--site-id", "0"], "positive"),
        (["--site-id", "1", "--peer", "1=127.0.0.1:1"], "own site id"),
        (["--site-id", "1", "--peer", "2=nohostport"], "HOST:PORT"),
        (["--site-id", "1", "--heartbeat-ms", "1"], "heartbeat"),
        (["--site-id", "1", "--peer-queue-bytes", "10"], "peer queue"),
        (["--site-id", "1", "--socket", "/tmp/x", "--admin-socket", "/tmp/x"], "same path"),
        (["--site-id", "1", "--socket", "/tmp/" + String(repeating: "s", count: 120)], "longer than"),
        (["--site-id", "1", "--peer", "2=0.0.0.0:7001"], "wildcard"),
        (["--site-id", "1", "--peer", "2=[::]:7001"], "wildcard"),
        (["--site-id", "1", "--listen", "0.0.0.0:7001"], "--group-key-file"),
        (["--site-id", "1", "--listen", "10.9.8.7:7001"], "--insecure"),
        (["--site-id", "1", "--listen", "127.0.0.1:7001", "--advertise", "0.0.0.0:7001"], "wildcard"),
        (["--site-id", "1", "--advertise", "10.0.0.1:7001"], "needs --listen"),
        (["--site-id", "1", "--listen", "127.0.0.1:1", "--join", "0.0.0.0:7001"], "wildcard"),
        (["--site-id", "1", "--max-groups", "0"], "max groups"),
        (["--site-id", "1", "--max-clients", "0"], "max clients"),
    ])
    func invalidSettingsAreRefusedWithAReason(words: [String], fragment: String) throws {
        let config = try parse(words)
        do {
            _ = try config.validate()
            Issue.record("accepted \(words)")
        } catch {
            #expect("\(error)".contains(fragment), "\(error)")
        }
    }

    @Test(arguments: [
        ["--listen"], ["--site-id", "x"], ["--bogus", "1"], ["--site-id", "1", "--peer", "two=h:1"],
        ["--site-id", "1", "--log-level", "loud"], [],
    ])
    func usageErrorsAreUsageErrors(words: [String]) {
        #expect(throws: UsageError.self) { _ = try parse(words) }
    }

    @Test(arguments: [
        (["--site-id", "1", "--tls-cert", "a.pem"], "both --tls-cert and --tls-key"),
        (["--site-id", "1", "--tls-ca", "ca.pem"], "both --tls-cert and --tls-key"),
        (["--site-id", "1", "--tls-cert", "a.pem", "--tls-key", "a.key"], "--tls-ca"),
        (["--site-id", "1", "--tls-cert", "a.pem", "--tls-key", "a.key", "--tls-pin", "2=abc"], "64 hex digits"),
        (["--site-id", "1", "--tls-cert", "a.pem", "--tls-key", "a.key", "--tls-pin", "x=abc"], "ID=SHA256"),
        (["--site-id", "1", "--tls-cert", "a.pem", "--tls-key", "a.key", "--tls-pin", "2=" + String(repeating: "a", count: 64),
          "--tls-pin", "2=" + String(repeating: "b", count: 64)], "pinned twice"),
    ])
    func incompleteTLSSettingsAreUsageErrorsWithAReason(words: [String], fragment: String) {
        do {
            _ = try parse(words)
            Issue.record("accepted \(words)")
        } catch {
            #expect(error is UsageError && "\(error)".contains(fragment), "\(error)")
        }
    }

    /// The TLS settings from flags or the file (tls_cert, tls_key, tls_ca, tls_pins); a pin as openssl prints
    /// it (colons, upper case) is kept as lowercase hex; TLS lets a listener others can reach go without a key.
    @Test func tlsSettingsComeFromTheFlagsOrTheFile() throws {
        let digest = (0..<32).map { String(format: "%02X", $0) }.joined(separator: ":")
        let config = try parse(["--site-id", "1", "--tls-cert", "s1.pem", "--tls-key", "s1.key", "--tls-pin", "2=\(digest)",
                                "--listen", "0.0.0.0:7001"])
        #expect(config.tls == TLSSettings(certificate: "s1.pem", key: "s1.key", ca: nil,
                                          pins: [2: (0..<32).map { String(format: "%02x", $0) }.joined()]))
        try config.validate()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rb-tls-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(#"{"site_id": 1, "tls_cert": "f.pem", "tls_key": "f.key", "tls_ca": "ca.pem"}"#.utf8).write(to: file)
        #expect(try parse(["--config", file.path]).tls == TLSSettings(certificate: "f.pem", key: "f.key", ca: "ca.pem"))
        #expect(try parse(["--config", file.path, "--tls-ca", "other.pem"]).tls?.ca == "other.pem")
        #expect(try parse(["--site-id", "1"]).tls == nil)
    }

    @Test func theLimitsAndAddressSettingsComeFromTheFileToo() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rb-config-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data("""
            {"site_id": 2, "listen": "0.0.0.0:7002", "advertise": "10.1.2.3:7002", "insecure": true,
             "max_clients": 50, "max_groups": 9, "group_grace_ms": 1500}
            """.utf8).write(to: file)
        let config = try parse(["--config", file.path])
        #expect(config.advertise == "10.1.2.3:7002" && config.insecure)
        #expect(config.maxClients == 50 && config.maxGroups == 9 && config.groupGraceMilliseconds == 1500)
        _ = try config.validate()
        let overridden = try parse(["--config", file.path, "--max-groups", "3", "--advertise", "10.1.2.4:7002"])
        #expect(overridden.maxGroups == 3 && overridden.advertise == "10.1.2.4:7002")
        #expect(try parse(["--site-id", "1"]).maxClients == nil, "by default a share of the descriptor limit")
    }

    @Test func aListenerOthersCanReachNeedsAKeyOrInsecure() throws {
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("rb-key-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: keyFile) }
        try Data(repeating: 7, count: 32).write(to: keyFile)
        _ = try parse(["--site-id", "1", "--listen", "0.0.0.0:7001", "--insecure"]).validate()
        _ = try parse(["--site-id", "1", "--listen", "0.0.0.0:7001", "--group-key-file", keyFile.path]).validate()
        _ = try parse(["--site-id", "1", "--listen", "127.0.0.1:7001"]).validate()
        _ = try parse(["--site-id", "1", "--listen", "[::1]:7001"]).validate()
    }

    @Test func peerHostNamesAreParsedNotLookedUpAtStart() throws {
        let config = try parse(["--site-id", "1", "--peer", "2=no-such-host.invalid:7001", "--peer", "3=127.0.0.1:7003"])
        try config.validate()
        let peers = config.coreConfig(maxClients: 8).peers
        #expect(peers.map(\.address) == ["no-such-host.invalid:7001", "127.0.0.1:7003"])
    }

    @Test func repeatedOptionsAndEqualsFormParse() throws {
        let parsed = try ParsedArguments(["--peer=2=h:1", "--peer", "3=h:2", "--json", "pos"],
                                         valued: ["peer"], flagNames: ["json"])
        #expect(parsed.all("peer") == ["2=h:1", "3=h:2"])
        #expect(parsed.has("json"))
        #expect(parsed.positionals == ["pos"])
    }
}
