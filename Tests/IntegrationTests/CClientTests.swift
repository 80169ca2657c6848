// librepbroker, the C client, against real brokers: built by scripts/build-c-client (shared library, static
// library, header, pkg-config file), its check program (ipc/client/tests/client_check.c) compiled against the
// installed library the way an application is, and Swift clients on the other side, both ways.
import BrokerHarness
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient
import Testing

/// The library and the check program, built once per test process into a temporary directory.
final class CClientBuild: @unchecked Sendable {
    static let shared = Result { try CClientBuild() }
    let prefix: String
    let check: String

    private init() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let directory = try TemporaryDirectory(prefix: "rbc")
        prefix = directory.path
        check = directory.path + "/client_check"
        try Self.run("/bin/sh", ["-c", "\(root)/scripts/build-c-client \(prefix)"])
        // As an application builds: the installed header and library, through pkg-config.
        try Self.run("/bin/sh", ["-c", "cc -std=c11 -Wall -Wextra -Werror \(root)/ipc/client/tests/client_check.c -o \(check) "
            + "$(PKG_CONFIG_PATH=\(prefix)/lib/pkgconfig pkg-config --cflags --libs repbroker) -Wl,-rpath,\(prefix)/lib"])
    }

    static func run(_ executable: String, _ arguments: [String]) throws {
        let child = try ChildProcess(name: "build", executable: executable, arguments: arguments)
        guard child.waitForExit(timeout: 120) == 0 else {
            child.waitForOutputEnd(timeout: 5)
            throw HarnessError("\(arguments.joined(separator: " ")) failed: \(child.lines.suffix(20).joined(separator: "\n"))")
        }
    }

    /// Runs the check program to its end; its output lines.
    func run(_ arguments: [String], timeout: Double = 60, transport: String? = nil) throws -> (status: Int32?, lines: [String]) {
        let child = try start(arguments, transport: transport)
        let status = child.waitForExit(timeout: timeout)
        if status == nil { child.kill9() }
        child.waitForOutputEnd(timeout: 5)
        return (status, child.lines)
    }

    func start(_ arguments: [String], transport: String? = nil) throws -> ChildProcess {
        try ChildProcess(name: "client_check", executable: check, arguments: arguments, stderrPath: "/dev/null",
                         environment: transport.map { ["CLIENT_CHECK_TRANSPORT": $0] } ?? [:])
    }
}

@Suite struct CClientTests {
    let build: CClientBuild

    init() throws { build = try CClientBuild.shared.get() }

    @Test func aCSenderReachesSwiftReceiversByUnicastAndBroadcastWithItsSourceAndLSN() throws {
        try withSites(3) { sites in
            let receivers = try [2, 3].map { try client(sites.broker(Int32($0)), roles: [.receiver], name: "swift-in-\($0)") }
            for receiver in receivers { #expect(receiver.waitForReceiverRole(timeout: 10)) }
            #expect(try build.run(["send", sites.broker(1).socketPath, "default", "2", "to-two", "lsn", "3", "77"]).lines
                    == ["result OK"])
            let unicast = try #require(try receivers[0].receive(timeout: 10))
            #expect(unicast.source == 1 && unicast.control == Array("c".utf8) && unicast.rec == Array("to-two".utf8))
            #expect(unicast.lsn == LSN(file: 3, offset: 77))
            #expect(try build.run(["send", sites.broker(1).socketPath, "default", "-1", "to-all"]).lines == ["result OK"])
            for receiver in receivers {
                #expect(try receiver.receive(timeout: 10)?.rec == Array("to-all".utf8))
            }
            // Broadcast goes to the other sites only: nothing for a receiver at the sender's own site.
            let local = try client(sites.broker(1), roles: [.receiver], name: "swift-in-1")
            #expect(local.waitForReceiverRole(timeout: 10))
            #expect(try build.run(["send", sites.broker(1).socketPath, "default", "-1", "again"]).lines == ["result OK"])
            #expect(try receivers[1].receive(timeout: 10)?.rec == Array("again".utf8))
            #expect(try local.receive(timeout: 0.5) == nil)
        }
    }

    @Test func aCReceiverGetsSwiftMessagesInOrderWithSourcesFlagsAndSiteEvents() throws {
        try withSites(2) { sites in
            let receiver = try build.start(["receive", sites.broker(2).socketPath, "default", "201", "10000"])
            #expect(receiver.waitForLines(timeout: 20) { $0.contains { $0.hasPrefix("ready") } })
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.groups.contains { $0.receiverClient != nil } })
            // Site 1 is down for this group until a client holds its receiver role there.
            let receiver1 = try client(sites.broker(1), roles: [.receiver], name: "swift-receiver-1")
            defer { receiver1.close() }
            #expect(receiver.waitForLines(timeout: 10) { $0.contains("site-up 1") })
            let sender = try client(sites.broker(1), name: "swift-out")
            try sender.send(control: Array("ctl".utf8), rec: Array("first".utf8), lsn: LSN(file: 1, offset: 28), to: 2,
                            flags: [.noBuffer])
            for index in 0..<200 { try sender.send(control: Array("k".utf8), rec: Array("n\(index)".utf8), to: -1) }
            #expect(receiver.waitForExit(timeout: 30) == 0)
            receiver.waitForOutputEnd(timeout: 5)
            let messages = receiver.lines.filter { $0.hasPrefix("message ") }
            #expect(messages.first == "message 1 1 28 \(RepFlags.noBuffer.rawValue) ctl first")
            #expect(Array(messages.dropFirst()) == (0..<200).map { "message 1 0 0 0 k n\($0)" })
            let events = receiver.lines.filter { $0.hasPrefix("site-") }
            #expect(events == ["site-down 1", "site-up 1"], "the receiver learns which sites are up")
            #expect(receiver.lines.last == "done 201 received 201")
        }
    }

    @Test func permanentSendsFromCWaitForTheirAckPolicy() throws {
        try withSites(3) { sites in
            // Site 2's receiver acknowledges every record; site 3's takes messages but acknowledges none.
            let acker = try build.start(["receive", sites.broker(2).socketPath, "default", "3", "20000", "ack"])
            let silent = try client(sites.broker(3), roles: [.receiver], name: "silent")
            #expect(acker.waitForLines(timeout: 20) { $0.contains { $0.hasPrefix("ready") } } && silent.waitForReceiverRole(timeout: 10))
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.groups.contains { $0.receiverClient != nil } })
            let socket = sites.broker(1).socketPath
            // quorum of 3: one other site; all: both (site 3 never acknowledges: not acknowledged in time).
            #expect(try build.run(["send", socket, "default", "-1", "p1", "permanent", "quorum", "2000", "lsn", "1", "100"]).lines
                    == ["result OK"])
            #expect(try build.run(["send", socket, "default", "-1", "p2", "permanent", "one", "2000", "lsn", "1", "200"]).lines
                    == ["result OK"])
            #expect(try build.run(["send", socket, "default", "-1", "p3", "permanent", "all", "300", "lsn", "1", "300"]).lines
                    == ["result ENOTACKED", "reason LSN 1/300 was not acknowledged as the all policy asks within 300 ms: "
                        + "acknowledged by sites 2; not by 3"])
            #expect(acker.waitForExit(timeout: 30) == 0)
            // A PERMANENT send to a site that is not a member: unroutable.
            #expect(try build.run(["send", socket, "default", "9", "nowhere", "permanent", "none", "1000"]).lines
                    == ["result EUNROUTABLE", "reason site 9 is not a member of the group"])
            let stats = try sites.broker(1).stats()
            #expect(stats.totals.permanentAcked >= 2 && stats.totals.permanentAckFailures >= 1)
        }
    }

    @Test func errorsAreCodesWithReasons() throws {
        try withSites(1, extraArguments: ["--heartbeat-ms", "200", "--max-groups", "1"]) { sites in
            let socket = sites.broker(1).socketPath
            #expect(try build.run(["open", socket + ".missing", "default"]).lines == ["result EUNAVAILABLE"])
            #expect(try build.run(["open", socket, String(repeating: "g", count: 65)]).lines == ["result EINVAL"])
            #expect(try build.run(["too-large", socket]).lines == ["result ETOOLARGE"])
            // The broker serves one group (default, above): a new one is refused with the broker's reason.
            #expect(try build.run(["open", socket, "default"]).lines == ["result OK"])
            let held = try client(sites.broker(1), name: "holds-the-slot")
            #expect(try build.run(["open", socket, "another"]).lines == ["result EREFUSED"])
            held.close()
        }
    }

    /// Every call given an invalid argument fails with REPBROKER_EINVAL and says why; a name that is not UTF-8
    /// never reaches the broker (a SUBSCRIBE of "\\xff" used to be sent, refused as a bad frame, and sent again
    /// on every reconnect, ten times a second, for ever); the client then works as before.
    @Test func invalidArgumentsAreRefusedWithAReasonAndTheClientGoesOn() throws {
        try withSites(2) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver], name: "receiver")
            defer { receiver.close() }
            let run = try build.run(["invalid", sites.broker(1).socketPath, "default"])
            let lines = Dictionary(run.lines.map { line in
                let parts = line.split(separator: " ", maxSplits: 2).map(String.init)
                return (parts[0], Array(parts.dropFirst()))
            }, uniquingKeysWith: { first, _ in first })
            for call in ["open-group-not-utf8", "send-eid-0", "send-flags-0x100", "send-null-control", "acknowledge-site-0",
                         "announce-master--5", "subscribe-not-utf8", "subscribe-overlong", "channel-send-empty",
                         "channel-send-broadcast"] {
                let result = lines[call] ?? []
                #expect(result.first == "EINVAL", "\(call): \(result)")
                #expect(result.count == 2 && result[1].count > 10, "\(call) gives a reason: \(result)")
            }
            #expect(lines["open-group-not-utf8"]?.last?.contains("UTF-8") == true)
            #expect(lines["subscribe-not-utf8"]?.last?.contains("UTF-8") == true)
            #expect(lines["send-eid-0"]?.last?.contains("destination 0") == true)
            #expect(lines["valid"] == ["OK"])
            #expect(try receiver.receive(timeout: 10)?.rec == Array("valid".utf8))
            let stats = try sites.broker(1).stats()
            #expect(stats.totals.badFrames == 0, "nothing invalid reached the broker")
        }
    }

    /// Over the socket, a send that finds no room for the send timeout (its group congested) fails with
    /// ETIMEDOUT. A small message was not written at all: the connection stays (the same client id after).
    /// A message larger than the socket's buffer was partly written: the connection is dropped and made again,
    /// and the reason says so (before, it said that the broker had closed the connection).
    @Test(arguments: [(4096, false), (4 << 20, true)])
    func aSocketSendThatTimesOutSaysWhatBecameOfTheConnection(size: Int, dropped: Bool) throws {
        try withSites(2, extraArguments: congestibleSites) { sites in
            let congestion = try CongestedGroup(sites)
            defer { congestion.close() }
            let sender = try build.start(["send-until-timeout", sites.broker(1).socketPath, "default", "2", "\(size)"])
            #expect(sender.waitForLines(timeout: 30) { $0.contains { $0.hasPrefix("client-id") } })
            congestion.release()
            #expect(sender.waitForExit(timeout: 60) == 0)
            sender.waitForOutputEnd(timeout: 5)
            let lines = sender.lines
            #expect(lines.first?.hasPrefix("result ETIMEDOUT") == true, "\(lines)")
            let reason = lines.first { $0.hasPrefix("reason ") } ?? ""
            #expect(!reason.contains("the broker closed the connection"), "\(reason)")
            let before = lines.first { $0.hasPrefix("client-id ") }?.split(separator: " ").last
            let after = lines.first { $0.hasPrefix("then OK client-id ") }?.split(separator: " ").last
            #expect(after != nil, "a later send went: \(lines)")
            if dropped {
                #expect(reason.contains("the connection was dropped") && before != after, "\(lines)")
            } else {
                #expect(reason.contains("nothing was sent") && before == after, "\(lines)")
            }
        }
    }

    /// A send waiting for room in a full ring holds up no control call: the master announcement made meanwhile
    /// from another thread reaches the broker before the send gives up.
    @Test func aControlCallGoesWhileASendWaitsForRingRoom() throws {
        try withSites(2, extraArguments: congestibleSites) { sites in
            let congestion = try CongestedGroup(sites)
            defer { congestion.close() }
            let blocked = try build.start(["control-while-blocked", sites.broker(1).socketPath, "default", "2", "8192"])
            #expect(blocked.waitForExit(timeout: 30) == 0)
            blocked.waitForOutputEnd(timeout: 5)
            #expect(blocked.lines == ["announced OK", "send-returned ETIMEDOUT"], "\(blocked.lines)")
        }
    }

    /// The broker is killed and restarted: a C receiver reconnects by itself, registers anew and gets what is
    /// sent after the restart; with reconnecting turned off it stops with REPBROKER_EUNAVAILABLE instead.
    @Test func aCReceiverReconnectsToARestartedBrokerOrStopsWithoutReconnecting() throws {
        try withSites(2) { sites in
            let receiver = try build.start(["receive", sites.broker(2).socketPath, "default", "2", "60000"])
            let other = try build.start(["receive", sites.broker(2).socketPath, "other", "1", "60000", "noreconnect"])
            #expect(receiver.waitForLines(timeout: 20) { $0.contains { $0.hasPrefix("ready") } })
            #expect(other.waitForLines(timeout: 20) { $0.contains { $0.hasPrefix("ready") } })
            let sender = try client(sites.broker(1), name: "swift-out")
            try sender.send(control: [], rec: Array("before".utf8), to: 2)
            #expect(receiver.waitForLines(timeout: 20) { $0.contains { $0.hasSuffix(" before") } })
            sites.broker(2).kill9()
            #expect(other.waitForExit(timeout: 20) == 0)
            other.waitForOutputEnd(timeout: 5)
            #expect(other.lines.contains("stopped EUNAVAILABLE"))
            try sites.broker(2).start()
            // The C receiver holds the role again at the restarted broker, then takes the next message.
            #expect(sites.broker(2).waitForStats(timeout: 20) { $0.groups.contains { $0.name == "default" && $0.receiverClient != nil } })
            #expect(sites.broker(1).waitForStats(timeout: 20) { $0.peers.first?.state == .connected })
            try sender.send(control: [], rec: Array("after".utf8), to: 2)
            #expect(receiver.waitForExit(timeout: 30) == 0)
            receiver.waitForOutputEnd(timeout: 5)
            #expect(receiver.lines.filter { $0.hasPrefix("message ") } == ["message 1 0 0 0  before", "message 1 0 0 0  after"])
        }
    }

    @Test func manyMessagesFromCArriveInOrder() throws {
        try withSites(2) { sites in
            let receiver = try client(sites.broker(2), roles: [.receiver], name: "swift-in")
            #expect(receiver.waitForReceiverRole(timeout: 10))
            #expect(try build.run(["send-many", sites.broker(1).socketPath, "default", "2", "20000"]).lines == ["sent 20000"])
            let received = try receiveAll(receiver, count: 20000, timeout: 20)
            #expect(received.map { String(decoding: $0.rec, as: UTF8.self) } == (0..<20000).map { "m-\($0)" })
        }
    }

    /// The README's rep_set_transport example compiles and links against the library and libdb 5.3.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/include/db.h"), "needs libdb5.3-dev"))
    func theRepSetTransportExampleBuildsWithBerkeleyDB() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        try CClientBuild.run("/bin/sh", ["-c", "cc -std=c11 -Wall -Wextra -Werror -fPIC -shared "
            + "\(root)/ipc/client/examples/rep_transport.c -o \(build.prefix)/rep_transport.so "
            + "$(PKG_CONFIG_PATH=\(build.prefix)/lib/pkgconfig pkg-config --cflags --libs repbroker) -ldb-5.3"])
        #expect(FileManager.default.fileExists(atPath: build.prefix + "/rep_transport.so"))
    }

    /// The static library links a program that needs no shared librepbroker at run time.
    @Test func theStaticLibraryLinksAProgramOfItsOwn() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let program = build.prefix + "/client_check_static"
        try CClientBuild.run("/bin/sh", ["-c", "cc -std=c11 \(root)/ipc/client/tests/client_check.c -I\(build.prefix)/include "
            + "\(build.prefix)/lib/librepbroker.a -pthread -o \(program)"])
        try withSites(1) { sites in
            let child = try ChildProcess(name: "static", executable: program,
                                         arguments: ["open", sites.broker(1).socketPath, "default"])
            #expect(child.waitForExit(timeout: 20) == 0)
            child.waitForOutputEnd(timeout: 5)
            #expect(child.lines == ["result OK"])
        }
    }

    /// The Python module (ipc/python/repbroker.py, ctypes over librepbroker): a Python receiver gets a Swift
    /// client's message with its source and LSN and acknowledges it; a Python PERMANENT send waits for that ack.
    @Test func thePythonModuleSendsReceivesAndAcknowledgesThroughTheCLibrary() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        try withSites(2) { sites in
            // The module's ctypes structs have the C structs' sizes.
            let sizes = try build.run(["sizes", "-"]).lines.first?.split(separator: " ").dropFirst().joined(separator: " ") ?? ""
            let script = """
                import sys, ctypes, repbroker
                sizes = [ctypes.sizeof(s) for s in (repbroker._Options, repbroker._Event, repbroker._ChannelMessage, repbroker._Stats)]
                assert " ".join(map(str, sizes)) == sys.argv[2], (sizes, sys.argv[2])
                receiver = repbroker.Client(socket_path=sys.argv[1], name="py-in", roles=("sender", "receiver"))
                print("ready", receiver.site_id, flush=True)
                while True:
                    event = receiver.next_event(timeout=20)
                    if isinstance(event, repbroker.Message):
                        print("message", event.site, event.control.decode(), event.rec.decode(), event.lsn, flush=True)
                        receiver.acknowledge(event.lsn, event.site)
                        break
                sender = repbroker.Client(socket_path=sys.argv[1], name="py-out", ack_policy="all")
                sender.send(1, b"c", b"from python", lsn=(2, 50), flags=repbroker.REP_PERMANENT)
                print("permanent sent", flush=True)
                try:
                    sender.send(repbroker.EID_BROADCAST, b"", b"x" * (sender.max_message + 1))
                except repbroker.RepbrokerError as error:
                    print("error", error.code, error.name.split(":")[0], flush=True)
                sender.close()
                receiver.close()
                """
            let python = try ChildProcess(name: "python", executable: "/usr/bin/env",
                                          arguments: ["python3", "-c", script, sites.broker(2).socketPath, sizes],
                                          stderrPath: build.prefix + "/python.err",
                                          environment: ["PYTHONPATH": root + "/ipc/python",
                                                        "REPBROKER_LIBRARY": build.prefix + "/lib/librepbroker.so"])
            #expect(python.waitForLines(timeout: 20) { $0.contains { $0.hasPrefix("ready") } })
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.groups.contains { $0.receiverClient != nil } })
            // Site 1's receiver acknowledges what Python sends it; Python's receiver acknowledges what it gets.
            let swift = try client(sites.broker(1), roles: [.sender, .receiver], name: "swift")
            #expect(swift.waitForReceiverRole(timeout: 10))
            try swift.send(control: Array("k".utf8), rec: Array("to python".utf8), lsn: LSN(file: 1, offset: 9), to: 2)
            let fromPython = try #require(try swift.receive(timeout: 20))
            try swift.acknowledge(lsn: fromPython.lsn, to: fromPython.source)
            #expect(fromPython.rec == Array("from python".utf8) && fromPython.source == 2 && fromPython.lsn == LSN(file: 2, offset: 50))
            #expect(python.waitForExit(timeout: 30) == 0)
            python.waitForOutputEnd(timeout: 5)
            #expect(python.lines.contains("message 1 k to python (1, 9)"))
            #expect(python.lines.contains("permanent sent"))
            #expect(python.lines.contains("error 5 REPBROKER_ETOOLARGE"), "\(python.lines)")
        }
    }

    /// The Python module's channels and stats: a Python subscriber at site 2 takes a message and answers a request
    /// that Python at site 1 sends it, and the sender's counters show what it sent.
    @Test func thePythonModuleForwardsOnChannelsAndCounts() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        try withSites(2) { sites in
            let environment = ["PYTHONPATH": root + "/ipc/python", "REPBROKER_LIBRARY": build.prefix + "/lib/librepbroker.so"]
            let serve = """
                import sys, repbroker
                client = repbroker.Client(socket_path=sys.argv[1], name="py-serve")
                client.subscribe("writes")
                print("subscribed", flush=True)
                note = client.next_channel_message(timeout=20)
                print("note", note.channel, note.site, note.is_request, note.payload.decode(), flush=True)
                ask = client.next_channel_message(timeout=20)
                print("request", ask.channel, ask.site, ask.is_request, ask.payload.decode(), flush=True)
                client.reply(ask, b"committed " + ask.payload)
                assert client.next_channel_message(timeout=0.2) is None
                client.close()
                """
            let server = try ChildProcess(name: "py-serve", executable: "/usr/bin/env",
                                          arguments: ["python3", "-c", serve, sites.broker(2).socketPath],
                                          stderrPath: build.prefix + "/py-serve.err", environment: environment)
            #expect(server.waitForLines(timeout: 20) { $0.contains("subscribed") })
            let ask = """
                import sys, repbroker
                client = repbroker.Client(socket_path=sys.argv[1], name="py-ask")
                client.channel_send("writes", 2, b"hello")
                print("reply", client.request("writes", 2, b"put k v", timeout=10).decode(), flush=True)
                try:
                    client.channel_send("nobody", 2, b"x", timeout=2)
                except repbroker.RepbrokerError as error:
                    print("error", error.name.split(":")[0], flush=True)
                stats = client.stats()
                print("stats", sorted(stats), stats["messages_sent"] >= 0, flush=True)
                client.close()
                """
            let asker = try ChildProcess(name: "py-ask", executable: "/usr/bin/env",
                                         arguments: ["python3", "-c", ask, sites.broker(1).socketPath],
                                         stderrPath: build.prefix + "/py-ask.err", environment: environment)
            #expect(asker.waitForExit(timeout: 30) == 0, "\((try? String(contentsOfFile: build.prefix + "/py-ask.err", encoding: .utf8)) ?? "")")
            #expect(server.waitForExit(timeout: 30) == 0, "\((try? String(contentsOfFile: build.prefix + "/py-serve.err", encoding: .utf8)) ?? "")")
            asker.waitForOutputEnd(timeout: 5)
            server.waitForOutputEnd(timeout: 5)
            #expect(server.lines.contains("note writes 1 False hello"), "\(server.lines)")
            #expect(server.lines.contains("request writes 1 True put k v"))
            #expect(asker.lines.contains("reply committed put k v"), "\(asker.lines)")
            #expect(asker.lines.contains("error REPBROKER_ENOSUBSCRIBER"))
            #expect(asker.lines.contains { $0.hasPrefix("stats ['bytes_received', 'bytes_sent', 'messages_received', 'messages_sent', 'permanent_acked', 'permanent_failed'] True") })
        }
    }

    /// Channels between the C and Swift clients, both ways: messages, requests and replies, and each failure.
    @Test func channelsCarryMessagesAndRequestsBetweenCAndSwift() throws {
        try withSites(2) { sites in
            let one = sites.broker(1).socketPath, two = sites.broker(2).socketPath
            // A C subscriber at site 2 answers requests; a Swift client at site 1 asks.
            let server = try build.start(["serve", two, "default", "orders", "2"])
            #expect(server.waitForLines(timeout: 20) { $0.contains("subscribed") })
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.clients.contains { $0.name == "client_check" } })
            let swift = try client(sites.broker(1), name: "swift-asker")
            try swift.send(channel: "orders", to: 2, payload: Array("note".utf8))
            #expect(try swift.request(channel: "orders", to: 2, payload: Array("q1".utf8), timeout: 10) == Array("re:q1".utf8))
            #expect(server.waitForExit(timeout: 20) == 0)
            server.waitForOutputEnd(timeout: 5)
            #expect(server.lines.contains("channel-message 1 orders note") && server.lines.contains("request 1 orders q1"))
            // A Swift subscriber at site 1; the C client at site 2 sends and asks.
            let subscriber = try client(sites.broker(1), name: "swift-subscriber")
            try subscriber.subscribe(channel: "audit")
            startThread {
                while let message = try? subscriber.receiveChannelMessage(timeout: 20) {
                    if message.isRequest { try? subscriber.reply(to: message, payload: Array("ok ".utf8) + message.payload) }
                }
            }
            #expect(try build.run(["channel-send", two, "default", "audit", "1", "event", "10000"]).lines == ["result OK"])
            #expect(try build.run(["request", two, "default", "audit", "1", "check", "10000"]).lines == ["result OK", "reply ok check"])
            // Failures: nobody subscribes; no master known; a subscriber that never answers.
            #expect(try build.run(["channel-send", two, "default", "nobody", "1", "x", "10000"]).lines == ["result ENOSUBSCRIBER"])
            #expect(try build.run(["request", two, "default", "audit", "-3", "x", "10000"]).lines == ["result ENOMASTER"])
            let silent = try build.start(["serve", one, "default", "slow", "1", "silent"])
            #expect(silent.waitForLines(timeout: 20) { $0.contains("subscribed") })
            #expect(try build.run(["request", two, "default", "slow", "1", "x", "300"]).lines == ["result ETIMEDOUT"])
            #expect(sites.broker(2).waitForStats(timeout: 10) { $0.totals.channelTimeouts >= 1 })
        }
    }

    /// Each transport, chosen explicitly: the broker's stats show it, and messages small and large (in parts
    /// over a 64 KiB ring), site events and PERMANENT sends cross it both ways, in order.
    @Test(arguments: ["socket", "shm"])
    func eachTransportCarriesMessagesSmallAndLargeBothWays(transport: String) throws {
        try withSites(2) { sites in
            let receiver1 = try client(sites.broker(1), roles: [.receiver], name: "swift-receiver-1")
            defer { receiver1.close() }
            let receiver = try build.start(["receive", sites.broker(2).socketPath, "default", "103", "20000", "ack"],
                                           transport: transport)
            #expect(receiver.waitForLines(timeout: 20) { $0.contains { $0.hasPrefix("ready") } })
            let stats = try sites.broker(2).stats()
            #expect(stats.clients.first { $0.name == "client_check" }?.transport == (transport == "shm" ? "shm" : "uds"))
            let socket = sites.broker(1).socketPath
            #expect(try build.run(["send-many", socket, "default", "2", "100"], transport: transport).lines == ["sent 100"])
            #expect(try build.run(["send-big", socket, "default", "2", "200000"], transport: transport).lines == ["result OK"])
            #expect(try build.run(["send-big", socket, "default", "2", "3000"], transport: transport).lines == ["result OK"])
            #expect(try build.run(["send", socket, "default", "2", "last", "permanent", "all", "5000", "lsn", "4", "8"],
                                  transport: transport).lines == ["result OK"])
            #expect(receiver.waitForExit(timeout: 30) == 0)
            receiver.waitForOutputEnd(timeout: 5)
            let messages = receiver.lines.filter { $0.hasPrefix("message") }
            #expect(Array(messages.prefix(100)) == (0..<100).map { "message 1 0 0 0  m-\($0)" })
            let sum200k = (0..<200_000).reduce(0) { $0 + ($1 * 7 % 251) }
            let sum3k = (0..<3000).reduce(0) { $0 + ($1 * 7 % 251) }
            #expect(Array(messages.dropFirst(100)) == ["message-big 1 200000 \(sum200k) pattern", "message-big 1 3000 \(sum3k) pattern",
                                                       "message 1 4 8 \(RepFlags.permanent.rawValue) c last"])
            #expect(receiver.lines.contains("site-up 1"))
        }
    }
}
