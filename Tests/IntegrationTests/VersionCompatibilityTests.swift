// Rolling upgrades, the client side (PROTOCOL.md, "Versioning"): a client of the version before is served at its
// version; a client of this version registers again at the older version with a broker that speaks only that
// (a stand-in broker here, which refuses a version 6 REGISTER as a protocol 5 broker does); and the C client
// library and Python module of the previous release (built from its git tag) work with this broker.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct VersionCompatibilityTests {
    @Test func aClientOfTheVersionBeforeIsServedAtItsVersionAndLoggedOnce() throws {
        try withSites(1) { sites in
            let raw = try RawConnection.unix(sites.broker(1).socketPath)
            defer { raw.close() }
            let old = RegisterFrame(versions: 5...5, roles: .sender, pid: 1, group: "default", name: "old-client")
            raw.write(FrameParser.encode(.register, body: old.body))
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(raw.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var bytes = [UInt8](repeating: 0, count: 4096)
            let count = bytes.withUnsafeMutableBytes { read(raw.fd, $0.baseAddress, $0.count) }
            let welcome = try bytes.withUnsafeBytes { raw -> WelcomeFrame? in
                guard count > 0, let frame = try FrameParser.next(in: UnsafeRawBufferPointer(rebasing: raw[..<count]),
                                                                  maxMessage: 1 << 20), frame.type == .welcome else { return nil }
                return try WelcomeFrame(body: frame.body)
            }
            #expect(welcome?.version == 5, "WELCOME at the client's version")
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.clients.first?.protocolVersion == 5 })
            #expect(sites.broker(1).log.contains("client speaks protocol 5"))
            let current = try client(sites.broker(1), name: "current")
            defer { current.close() }
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.clients.contains { $0.name == "current" && $0.protocolVersion == 6 } })
        }
    }

    /// A broker of the version before refuses a version 6 REGISTER with ERROR 1 and closes; the Swift client and
    /// the C library (through the Python module) then register at version 5 on a new connection.
    @Test func clientsRegisterAgainAtTheOlderVersionWithABrokerThatSpeaksOnlyIt() throws {
        let directory = try TemporaryDirectory(prefix: "rbold")
        defer { directory.remove() }
        let broker = try OldBrokerStandIn(path: directory.path + "/old.sock")
        let swift = try BrokerClient(options: BrokerClientOptions(socketPath: broker.path, name: "swift"))
        #expect(broker.registrations.suffix(2) == [6, 5], "\(broker.registrations)")
        swift.close()

        let build = try CClientBuild.shared.get()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let script = "import sys, repbroker\nc = repbroker.Client(socket_path=sys.argv[1], name='c-lib')\nprint('site', c.site_id, flush=True)\nc.close()\n"
        let python = try ChildProcess(name: "python", executable: "/usr/bin/env", arguments: ["python3", "-c", script, broker.path],
                                      stderrPath: directory.path + "/python.err",
                                      environment: ["PYTHONPATH": root + "/ipc/python",
                                                    "REPBROKER_LIBRARY": build.prefix + "/lib/librepbroker.so"])
        #expect(python.waitForExit(timeout: 30) == 0, "\((try? String(contentsOfFile: directory.path + "/python.err", encoding: .utf8)) ?? "")")
        #expect(python.lines.contains("site 7"))
        #expect(broker.registrations.suffix(2) == [6, 5], "\(broker.registrations)")
    }

    /// The previous release's C library and Python module (its git tag, built as that release built it) against
    /// this broker: messages both ways with a client of this version at another site.
    @Test(.enabled(if: PreviousRelease.tag != nil, "no previous release tag in this checkout (git tag v*)"))
    func thePreviousReleasesClientLibraryWorksWithThisBroker() throws {
        let previous = try PreviousRelease.build()
        try withSites(2) { sites in
            let script = """
                import sys, repbroker
                c = repbroker.Client(socket_path=sys.argv[1], name="old-python", roles=("sender", "receiver"))
                print("ready", flush=True)
                c.send(2, b"c", b"from the old library")
                while True:
                    event = c.next_event(timeout=20)
                    if isinstance(event, repbroker.Message):
                        print("got", event.rec.decode(), flush=True)
                        break
                c.close()
                """
            let python = try ChildProcess(name: "old-python", executable: "/usr/bin/env",
                                          arguments: ["python3", "-c", script, sites.broker(1).socketPath],
                                          stderrPath: previous.prefix + "/python.err",
                                          environment: ["PYTHONPATH": previous.source + "/ipc/python",
                                                        "REPBROKER_LIBRARY": previous.prefix + "/lib/librepbroker.so"])
            #expect(python.waitForLines(timeout: 20) { $0.contains("ready") })
            let current = try client(sites.broker(2), roles: [.sender, .receiver], name: "current")
            defer { current.close() }
            let message = try #require(try current.receive(timeout: 20))
            #expect(message.rec == Array("from the old library".utf8))
            #expect(sites.broker(1).waitForStats(timeout: 10) { $0.groups.contains { $0.receiverClient != nil } })
            try current.send(control: [], rec: Array("to the old library".utf8), to: 1)
            #expect(python.waitForExit(timeout: 30) == 0, "\((try? String(contentsOfFile: previous.prefix + "/python.err", encoding: .utf8)) ?? "")")
            #expect(python.lines.contains("got to the old library"))
            // Served at the highest version both speak; a client of an older version is logged once.
            let served = min(previous.protocolVersion, Wire.protocolVersion)
            #expect(sites.broker(1).log.contains("client speaks protocol \(served)") == (served < Wire.protocolVersion),
                    "\(sites.broker(1).log.suffix(1500))")
        }
    }
}

/// A Unix socket that answers as a broker of protocol 5 would: ERROR 1 to a REGISTER of another version, and
/// WELCOME (version 5, site 7) to a version 5 REGISTER. Keeps the versions it was sent.
final class OldBrokerStandIn: @unchecked Sendable {
    let path: String
    private let listener: OwnedDescriptor
    private let lock = ConditionLock()
    private var seen: [UInt16] = []

    init(path: String) throws {
        self.path = path
        listener = try Socket.listenUnix(path: path, mode: 0o600)
        try Posix.setNonBlocking(descriptor: listener.number, false)
        startThread { [self] in
            while true {
                let fd = accept(listener.number, nil, nil)
                if fd < 0 { if errno == EINTR { continue } else { return } }
                serve(OwnedDescriptor(adopting: fd))
            }
        }
    }

    deinit { listener.close() }

    var registrations: [UInt16] { lock.withLock { seen } }

    private func serve(_ connection: OwnedDescriptor) {
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { read(connection.number, $0.baseAddress, $0.count) }
        guard count >= 10 else { return }
        let version = UInt16(bytes[8]) | UInt16(bytes[9]) << 8
        lock.withLock { seen.append(version) }
        let answer: [UInt8]
        if version == 5 {
            answer = FrameParser.encode(.welcome, body: WelcomeFrame(version: 5, roleState: .none, siteID: 7, clientID: 1,
                                                                     maxMessage: 1 << 20).body)
            _ = answer.withUnsafeBytes { send(connection.number, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
            // Held open until the client closes it.
            while bytes.withUnsafeMutableBytes({ read(connection.number, $0.baseAddress, $0.count) }) > 0 {}
        } else {
            answer = FrameParser.encode(.error, body: ErrorFrame(code: .version,
                                                                 reason: "protocol version \(version); this broker speaks 5").body)
            _ = answer.withUnsafeBytes { send(connection.number, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
        }
    }
}

/// The previous release: the newest `v*` tag that is an ancestor of HEAD and not HEAD itself, its C client built
/// from its own sources (git archive) with its own build script, once per test process. Its protocol version is
/// read from its sources: the expectations hold whichever release is the previous one.
enum PreviousRelease {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static let tag: String? = {
        guard let head = try? runToEnd("/usr/bin/git", ["-C", root, "rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines),
              let tags = try? runToEnd("/usr/bin/git", ["-C", root, "tag", "--list", "v*", "--sort=-creatordate", "--merged", "HEAD"])
        else { return nil }
        for tag in tags.split(separator: "\n").map(String.init) where !tag.isEmpty {
            let commit = (try? runToEnd("/usr/bin/git", ["-C", root, "rev-list", "-n", "1", tag]))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if commit != head { return tag }
        }
        // A clone without tags: the release dist/previous-release records ("v0.4 <commit>"), if the commit is here.
        guard let recorded = try? String(contentsOfFile: root + "/dist/previous-release", encoding: .utf8),
              let commit = recorded.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines),
              (try? runToEnd("/usr/bin/git", ["-C", root, "cat-file", "-e", commit + "^{commit}"])) != nil else { return nil }
        return commit
    }()

    struct Build {
        let source: String
        let prefix: String
        /// The newest protocol version that release speaks (its RB_PROTOCOL_VERSION).
        let protocolVersion: UInt16
    }

    /// RB_PROTOCOL_VERSION from a source tree's C header.
    static func protocolVersion(ofSource source: String) throws -> UInt16 {
        let header = try String(contentsOfFile: source + "/ipc/include/repbroker_frames.h", encoding: .utf8)
        for line in header.split(separator: "\n") where line.hasPrefix("#define RB_PROTOCOL_VERSION ") {
            if let version = UInt16(line.split(separator: " ")[2].filter(\.isNumber)) { return version }
        }
        throw HarnessError("no RB_PROTOCOL_VERSION in \(source)")
    }

    private static let shared = Result { () throws -> Build in
        guard let tag else { throw HarnessError("no previous release tag") }
        let directory = try TemporaryDirectory(prefix: "rbprev")
        let source = directory.path + "/src", prefix = directory.path + "/prefix"
        try CClientBuild.run("/bin/sh", ["-c", "mkdir -p \(source) && git -C \(root) archive \(tag) ipc scripts | tar -x -C \(source)"])
        try CClientBuild.run("/bin/sh", ["-c", "\(source)/scripts/build-c-client \(prefix)"])
        return Build(source: source, prefix: prefix, protocolVersion: try protocolVersion(ofSource: source))
    }

    static func build() throws -> Build { try shared.get() }
}
