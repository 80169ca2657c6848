// Writers in C, and in Python, beside the Swift replication processes: the group starts as in the failover
// scenario, then C writer processes (libdb 5.3 and librepbroker, no Swift in them) or Python ones (Debian's
// bsddb3 with the repbroker module over librepbroker) commit at the master with the scenario's ack policy,
// and every site's dump must become identical and hold every transaction acknowledged.
import BrokerHarness
import Foundation

extension Scenario {
    /// Returns the transactions committed and acknowledged, once every site converged on them.
    public func cWritersConverge(python: Bool = false) throws -> (committed: Int, acked: Int, permFailures: Int) {
        defer { shutDown() }
        let program = try CWriter.build()
        try startGroup()
        let first = members[0]
        let writers = try (0..<options.writers).map { index in
            let arguments = ["--home", first.home, "--socket", first.broker.socketPath, "--count", "\(options.txns)",
                             "--prefix", "\(python ? "py" : "c")\(index)", "--value-size", "\(options.valueSize)",
                             "--ack-policy", options.ackPolicy]
            guard python else {
                return try ChildProcess(name: "c-write-\(index)", executable: program, arguments: arguments,
                                        stderrPath: first.broker.directory + "/c-write-\(index).err")
            }
            // Debian's python3 (where python3-bsddb3 is), the module and the library built beside the C writer.
            let interop = CWriter.interop.path
            return try ChildProcess(name: "py-write-\(index)", executable: "/usr/bin/python3",
                                    arguments: ["\(interop)/python/bdb_py_writer.py"] + arguments,
                                    stderrPath: first.broker.directory + "/py-write-\(index).err",
                                    environment: ["PYTHONPATH": "\(interop)/repbroker/ipc/python",
                                                  "REPBROKER_LIBRARY": CWriter.library(beside: program)])
        }
        var written = Written()
        for writer in writers {
            guard writer.waitForExit(timeout: 300) == 0 else {
                let err = (try? String(contentsOfFile: first.broker.directory + "/\(writer.name).err", encoding: .utf8)) ?? ""
                throw ScenarioFailure("\(writer.name) failed: \(err.suffix(500))")
            }
            writer.waitForOutputEnd(timeout: 5)
            written.acked.formUnion(writer.lines.filter { $0.hasPrefix("acked ") }.map { String($0.dropFirst(6)) })
            guard let summary = parseSummary(writer.lines) else { throw ScenarioFailure("\(writer.name): no summary") }
            written.add(summary)
        }
        log("\(python ? "Python" : "C") writers: \(written.committed) transactions committed, \(written.acked.count) acknowledged")
        let dump = try awaitConvergence(members, count: written.committed)
        let keys = Set(dump.map { String($0.prefix { $0 != "=" }) })
        guard written.acked.isSubset(of: keys) else { throw ScenarioFailure("an acknowledged transaction is missing") }
        log("all \(options.sites) dumps identical: \(dump.count) keys")
        return (written.committed, written.acked.count, written.permFailures)
    }
}
