// A client that asked to be re-initialized (its replication process wrote REINITIALIZE in its home and exited
// 3, as it does when it cannot sync) restarts: its old environment moves aside, it starts empty and the master
// brings it up to date, with every transaction committed before and after.
import BrokerHarness
import Foundation

extension Scenario {
    /// Runs the group, commits at the master, stops site 3's replication process with a recorded request,
    /// commits more, restarts it and waits until its dump equals the master's. Returns the files of the
    /// directory its old environment moved to.
    public func reinitializeClient() throws -> [String] {
        defer { shutDown() }
        try startGroup()
        let master = members[0]
        let client = members[2]
        let before = try write(at: master, phase: "r")
        _ = try awaitConvergence(members, count: before.committed)

        client.replicate?.kill9()
        client.replicate?.waitForOutputEnd(timeout: 5)
        let marker = client.home + "/REINITIALIZE"
        guard FileManager.default.createFile(atPath: marker, contents: Data("a test's request\n".utf8)) else {
            throw ScenarioFailure("cannot write \(marker)")
        }
        let during = try write(at: master, phase: "s")
        try startReplication(client, asMaster: false)
        try waitFor("site \(client.id) to sync again") { client.replicate?.lines.contains("startupdone") == true }
        guard let line = client.replicate?.lines.first(where: { $0.hasPrefix("reinitialized: ") }) else {
            throw ScenarioFailure("site \(client.id) did not say it was re-initialized: \(client.replicate?.lines ?? [])")
        }
        let aside = String(line.dropFirst("reinitialized: the old environment is in ".count))
        log("site \(client.id) moved its environment to \(aside) and synced again")

        let after = try write(at: master, phase: "t")
        let total = before.committed + during.committed + after.committed
        let final = try awaitConvergence(members, count: total)
        let keys = Set(final.compactMap { $0.split(separator: "=").first.map(String.init) })
        let lost = before.acked.union(during.acked).union(after.acked).subtracting(keys)
        guard lost.isEmpty else { throw ScenarioFailure("\(lost.count) acknowledged transactions lost, e.g. \(lost.first ?? "")") }
        log("all \(options.sites) dumps identical: \(final.count) keys")
        return try FileManager.default.contentsOfDirectory(atPath: aside)
    }
}
