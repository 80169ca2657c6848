// Writes issued at client sites, forwarded to the master on channel "writes", committed there and
// replicated back: every site's dump holds them.
import BrokerHarness
import Foundation

extension Scenario {
    /// Starts the group and a serve-writes process per site, issues `puts` puts at each client site with
    /// `bdb-site put`, and waits until every site's dump holds them. Returns the keys put.
    public func forwardedPuts(_ puts: Int) throws -> [String] {
        defer { shutDown() }
        try startGroup()
        // Before anyone serves writes at the master, a put is refused with a retryable error, never lost.
        let early = try ChildProcess(name: "put-early", program: self.site,
                                     arguments: ["put", "--socket", members[1].broker.socketPath, "early", "x"],
                                     stderrPath: members[1].broker.directory + "/put-early.err")
        let earlyStatus = early.waitForExit(timeout: 30)
        let earlyError = (try? String(contentsOfFile: members[1].broker.directory + "/put-early.err", encoding: .utf8)) ?? ""
        guard earlyStatus == 2, earlyError.contains("retry") else {
            throw ScenarioFailure("a put with nobody serving writes exited \(earlyStatus.map(String.init) ?? "-"): \(earlyError)")
        }
        var servers: [ChildProcess] = []
        defer { servers.forEach { $0.kill9() } }
        for site in members {
            let server = try ChildProcess(name: "serve-writes-\(site.id)", program: self.site,
                                          arguments: ["serve-writes", "--home", site.home, "--socket", site.broker.socketPath],
                                          stderrPath: site.broker.directory + "/serve\(site.id).err")
            servers.append(server)
            try waitFor("serve-writes at site \(site.id)") { server.lines.contains { $0.hasPrefix("serving writes") } }
        }
        var keys: [String] = []
        for site in members.dropFirst() {
            for index in 0..<puts {
                let key = "put-s\(site.id)-\(index)"
                let put = try ChildProcess(name: "put", program: self.site,
                                           arguments: ["put", "--socket", site.broker.socketPath, key, "from site \(site.id)"],
                                           stderrPath: site.broker.directory + "/put.err")
                guard put.waitForExit(timeout: 30) == 0 else {
                    let why = (try? String(contentsOfFile: site.broker.directory + "/put.err", encoding: .utf8)) ?? ""
                    throw ScenarioFailure("put \(key) at site \(site.id) failed: \(why.suffix(300))")
                }
                keys.append(key)
            }
        }
        let dumps = try awaitConvergence(members, count: keys.count)
        let present = Set(dumps.compactMap { $0.split(separator: "=").first.map(String.init) })
        guard present == Set(keys) else { throw ScenarioFailure("dumps hold \(present.count) of \(keys.count) forwarded puts") }
        log("\(keys.count) puts issued at client sites were committed at the master and replicated to every site")
        return keys
    }
}
