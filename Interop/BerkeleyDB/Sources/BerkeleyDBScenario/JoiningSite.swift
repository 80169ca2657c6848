// A fourth Berkeley DB site joins the running group the broker's way: its broker names one member only
// (--join); the members learn it; its replication process starts as a client with its site id as cdata,
// the other sites' processes see DB_REP_NEWSITE, and it catches up with the master's data (internal init).
import BrokerHarness
import Foundation

extension Scenario {
    /// Runs the group, commits `txns` per writer at the master, adds site 4 through site 2, and waits until
    /// site 4's dump equals the master's. Returns the sites that reported DB_REP_NEWSITE for site 4.
    public func joinFourthSite() throws -> [Int32] {
        defer { shutDown() }
        try startGroup()
        let written = try write(at: members[0], phase: "j")
        let before = try awaitConvergence(members, count: written.committed)
        let broker = BrokerProcess(siteID: 4, port: FreePort.next(), directory: sites.directory.path, peers: [],
                                   extraArguments: ["--heartbeat-ms", "250", "--join", "127.0.0.1:\(members[1].broker.port)"],
                                   program: options.broker)
        try broker.start()
        defer { broker.terminate() }
        try waitFor("site 4 to link to every member") {
            broker.waitForStats(timeout: 0.5) { $0.peers.count == 3 && $0.peers.allSatisfy { $0.state == .connected } }
        }
        log("site 4 joined through site 2 and is linked to sites 1, 2 and 3")
        let newcomer = Site(broker: broker, home: broker.directory + "/home4")
        try FileManager.default.createDirectory(atPath: newcomer.home, withIntermediateDirectories: true)
        newcomer.replicate = try ChildProcess(
            name: "replicate-4", program: try SiteAgent.program(),
            arguments: ["--home", newcomer.home, "--socket", broker.socketPath, "--site-id", "4",
                        "--nsites", "4", "--priority", "10"],
            stderrPath: broker.directory + "/replicate4.err")
        defer { newcomer.replicate?.kill9() }
        try waitFor("site 4 to sync") { newcomer.replicate?.lines.contains("startupdone") == true }
        let after = try awaitConvergence([members[0], newcomer], count: before.count)
        guard after == before else { throw ScenarioFailure("site 4 does not hold the master's data") }
        var announced: [Int32] = []
        try waitFor("DB_REP_NEWSITE at the other sites", timeout: 20) {
            announced = members.filter { $0.replicate?.lines.contains { $0.hasPrefix("newsite from=4") } == true }.map(\.id)
            return !announced.isEmpty
        }
        log("site 4 caught up with \(after.count) keys; DB_REP_NEWSITE at sites \(announced)")
        return announced
    }
}
