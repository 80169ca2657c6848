// Faults aimed at the site agent (repbroker-site on librepbroker-bdb) one at a time, each with its proof:
//  - two masters (two sites started as master at once): DUPMASTER, both step down, one is elected, and the
//    group commits and converges;
//  - a writer killed while it holds a transaction's locks: the agent's failchk thread frees them (the site's
//    replication process keeps running) and another writer commits the same key.
import BrokerHarness
import BrokerSystem
import Foundation

extension Site {
    /// Whether the replication process last said this site is master.
    var saysMaster: Bool {
        guard let replicate, replicate.isRunning else { return false }
        return lastSaidMaster(replicate.lines, site: id)
    }
}

/// Whether repbroker-site's status lines, read from the last, say that `site` is master.
func lastSaidMaster(_ lines: [String], site: Int32) -> Bool {
    for line in lines.reversed() {
        if line == "role=master" { return true }
        if line == "role=client" || line == "dupmaster" { return false }
        if line.hasPrefix("master=") { return line == "master=\(site)" }
    }
    return false
}

extension Scenario {
    /// Starts sites 1 and 2 as masters at once (site 3 as client). Returns the sites that reported DUPMASTER and
    /// the one master the group settled on, after its writers' commits reached every site.
    public func twoMastersSettle() throws -> (dupmasterSites: [Int32], master: Int32) {
        defer { shutDown() }
        try sites.start()
        try startReplication(members[0], asMaster: true)
        try startReplication(members[1], asMaster: true)
        try startReplication(members[2], asMaster: false)
        var master: Site?
        try waitFor("the group to settle on one master", timeout: 90) {
            let saying = members.filter(\.saysMaster)
            guard saying.count == 1, let only = saying.first else { return false }
            let agreed = members.allSatisfy { site in
                site.replicate?.lines.last { $0.hasPrefix("master=") || $0 == "role=master" }
                    .map { $0 == "role=master" ? site.id == only.id : $0 == "master=\(only.id)" } == true
            }
            if agreed { master = only }
            return agreed
        }
        guard let master else { throw ScenarioFailure("no master") }
        let dupmasters = members.filter { $0.replicate?.lines.contains("dupmaster") == true }.map(\.id)
        log("sites \(dupmasters) reported DUPMASTER; site \(master.id) is the one master")
        let written = try write(at: master, phase: "d")
        let dump = try awaitConvergence(members, count: written.committed)
        let keys = Set(dump.map { String($0.prefix { $0 != "=" }) })
        guard written.acked.isSubset(of: keys) else { throw ScenarioFailure("an acknowledged transaction is missing") }
        log("all \(options.sites) dumps identical: \(dump.count) keys")
        return (dupmasters, master.id)
    }

    /// At the master: a writer that holds a put's locks in an open transaction is killed with -9, then another
    /// writer puts the same key. Returns how long that second commit took (the wait is for failchk).
    public func deadWritersLocksAreFreed() throws -> Double {
        defer { shutDown() }
        try startGroup()
        let master = members[0]
        let check = try CPrograms.directory() + "/agent_check"
        let holder = try ChildProcess(name: "hold", executable: check,
                                      arguments: ["hold", master.home, master.broker.socketPath, "held"],
                                      stderrPath: master.broker.directory + "/hold.err")
        try waitFor("the writer to hold the key's lock") { holder.lines.contains("holding") || !holder.isRunning }
        guard holder.isRunning else { throw ScenarioFailure("the holding writer exited: \(holder.lines)") }
        holder.kill9()
        let began = Posix.monotonicNanoseconds()
        let putter = try ChildProcess(name: "put", executable: check,
                                      arguments: ["put", master.home, master.broker.socketPath, "held"],
                                      stderrPath: master.broker.directory + "/put.err")
        guard putter.waitForExit(timeout: 60) == 0 else {
            putter.kill9()
            let err = (try? String(contentsOfFile: master.broker.directory + "/put.err", encoding: .utf8)) ?? ""
            throw ScenarioFailure("the second writer did not commit: \(err.suffix(400))")
        }
        let took = Double(Posix.monotonicNanoseconds() - began) / 1e9
        guard master.replicate?.isRunning == true else {
            throw ScenarioFailure("the replication process exited: \(replicationReport([master]))")
        }
        log("the dead writer's lock was freed: the second commit took \(String(format: "%.2f", took)) s")
        let dump = try awaitConvergence(members, count: 1)
        guard dump == ["held=from-put"] else { throw ScenarioFailure("unexpected dump \(dump)") }
        return took
    }
}
