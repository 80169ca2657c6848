// repbrokerd as a process: clean stop on SIGTERM, a live broker on the socket path is refused, a stale
// socket is replaced, default paths, socket modes, usage and help.
import BrokerDaemon
import BrokerHarness
import Foundation
import RepBrokerClient
import Testing

func runToExit(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
               timeout: Double = 20) throws -> (status: Int32?, output: String) {
    let directory = try TemporaryDirectory(prefix: "rbrun")
    defer { directory.remove() }
    let child = try ChildProcess(name: executable, executable: Executables.path(executable), arguments: arguments,
                                 stderrPath: directory.path + "/stderr")
    let status = child.waitForExit(timeout: timeout)
    if status == nil { child.kill9() }
    child.waitForOutputEnd(timeout: 5)
    let stderr = (try? String(contentsOfFile: directory.path + "/stderr", encoding: .utf8)) ?? ""
    return (status, child.lines.joined(separator: "\n") + stderr)
}

@Suite struct LifecycleTests {
    @Test func sigtermStopsCleanlyAfterDeliveringAndRemovesTheSockets() throws {
        try withSites(2) { sites in
            let site1 = sites.broker(1)
            let receiver = try client(sites.broker(2), roles: [.receiver])
            let sender = try client(site1)
            for index in 0..<100 { try sender.send(control: [], rec: [UInt8(index)], to: 2) }
            #expect(site1.waitForStats(timeout: 10) { $0.totals.messagesRouted == 100 })
            #expect(site1.terminate() == 0)
            #expect(!FileManager.default.fileExists(atPath: site1.socketPath))
            #expect(!FileManager.default.fileExists(atPath: site1.adminSocketPath))
            #expect(try receiveAll(receiver, count: 100).map { $0.rec[0] } == (0..<100).map { UInt8($0) })
            #expect(site1.log.contains("stopped"))
        }
    }

    @Test func aBrokerStartedWithExitWithParentStopsWhenItsParentDies() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let broker = Executables.path("repbrokerd")
        let parent = try ChildProcess(
            name: "parent", executable: "/bin/sh",
            arguments: ["-c", "\(broker) --site-id 1 --socket \(directory.path)/s --admin-socket \(directory.path)/a "
                + "--exit-with-parent 2>/dev/null & echo $!; wait"])
        #expect(parent.waitForLines(timeout: 10) { !$0.isEmpty })
        let pid = try #require(parent.lines.first.flatMap { Int32($0) })
        #expect(Deadline.wait(timeout: 10) { (try? AdminClient.stats(adminSocket: directory.path + "/a")) != nil })
        parent.kill9()
        #expect(Deadline.wait(timeout: 10) { kill(pid, 0) != 0 }, "the broker outlived its parent")
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/s"), "and removed its sockets on the way")
    }

    @Test func aSecondBrokerOnALiveSocketExitsWithAClearError() throws {
        try withSites(1) { sites in
            let live = sites.broker(1)
            let (status, output) = try runToExit("repbrokerd", ["--site-id", "5", "--socket", live.socketPath,
                                                                "--admin-socket", live.adminSocketPath + "2"])
            #expect(status == 1)
            #expect(output.contains("another broker is listening"))
            #expect(try live.stats().siteID == 1, "the first broker still serves")
        }
    }

    @Test func aStaleSocketFromAKilledBrokerIsReplaced() throws {
        try withSites(1) { sites in
            let broker = sites.broker(1)
            broker.kill9()
            #expect(FileManager.default.fileExists(atPath: broker.socketPath), "kill -9 leaves the socket file")
            try broker.start()
            let receiver = try client(broker, roles: [.receiver])
            let sender = try client(broker)
            try sender.send(control: [], rec: [42], to: 1)
            #expect(try receiver.receive(timeout: 10)?.rec == [42])
        }
    }

    @Test func aNonSocketFileAtTheSocketPathIsNotTouched() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/precious"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: path))
        let (status, output) = try runToExit("repbrokerd", ["--site-id", "1", "--socket", path,
                                                            "--admin-socket", directory.path + "/a"])
        #expect(status == 1)
        #expect(output.contains("is not a socket"))
        #expect((try? String(contentsOfFile: path, encoding: .utf8)) == "keep me")
    }

    @Test func aLoneSiteUsesTheDefaultPathsWithMode0660() throws {
        let runtime = try TemporaryDirectory()
        defer { runtime.remove() }
        var environment = ProcessInfo.processInfo.environment
        environment["XDG_RUNTIME_DIR"] = runtime.path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Executables.path("repbrokerd"))
        process.arguments = ["--site-id", "9", "--log-level", "warning"]
        process.environment = environment
        try startingChild { try process.run() }
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        let socket = runtime.path + "/repbroker/broker.sock"
        let admin = runtime.path + "/repbroker/admin.sock"
        #expect(Deadline.wait(timeout: 10) { (try? AdminClient.stats(adminSocket: admin)) != nil })
        let attributes = try FileManager.default.attributesOfItem(atPath: socket)
        #expect((attributes[.posixPermissions] as? Int) == 0o660)
        #expect(try AdminClient.stats(adminSocket: admin).siteID == 9)
        let (status, output) = try runToExit("repbroker", ["stats", "--admin-socket", admin, "--json"])
        #expect(status == 0)
        #expect(output.contains("\"site_id\":9"))
    }

    static let usageCases: [([String], Int32)] = [
        (["--site-id"], 64), (["--site-id", "-3"], 64), (["--nope"], 64), (["--help"], 0),
        (["--site-id", "1", "--peer", "2=127.0.0.1:notaport"], 64),
    ]

    @Test(arguments: usageCases)
    func usageErrorsExit64AndHelpExits0(arguments: [String], expected: Int32) throws {
        let (status, output) = try runToExit("repbrokerd", arguments)
        #expect(status == expected, "\(arguments): \(output)")
        if expected == 0 { #expect(output.contains("USAGE: repbrokerd")) }
    }

    @Test func cliSubcommandsHaveHelpAndRefuseBadUsage() throws {
        for subcommand in ["stats", "send", "recv", "demo"] {
            let (status, output) = try runToExit("repbroker", [subcommand, "--help"])
            #expect(status == 0 && output.contains("USAGE: repbroker \(subcommand)"), "\(subcommand)")
        }
        #expect(try runToExit("repbroker", ["send", "--to", "nowhere"]).status == 64)
        #expect(try runToExit("repbroker", ["send", "--to", "2", "--flags", "sometimes"]).status == 64)
        #expect(try runToExit("repbroker", ["frobnicate"]).status == 64)
        let unreachable = try runToExit("repbroker", ["stats", "--admin-socket", "/tmp/definitely-not-here.sock"])
        #expect(unreachable.status == 1 && unreachable.output.contains("cannot connect"))
    }
}
