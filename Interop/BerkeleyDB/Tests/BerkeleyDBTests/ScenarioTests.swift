// The Berkeley DB failover scenario, with real libdb 5.3 processes through real brokers.
import BerkeleyDBScenario
import Foundation
import Testing

@Suite struct ScenarioTests {
    @Test func threeSitesReplicateElectFailOverAndConverge() throws {
        var options = ScenarioOptions()
        options.txns = 150
        let result = try Scenario(options: options) { print("scenario: \($0)") }.run()
        #expect(result.converged)
        #expect(result.txnsCommitted == 2 * options.writers * options.txns)
        #expect(result.permFailures == 0, "every commit met the quorum policy while a majority was up")
        #expect(result.failoverMilliseconds < 15_000)
    }
}

@Suite struct CommitBenchTests {
    /// Every row of the commit benchmark, short: each commits every transaction of its writers, after their
    /// warm-up, and reports its host's connections and the group's CPU (no timing asserted).
    @Test(arguments: CommitTransport.allCases)
    func aShortCommitBenchCommitsEveryTransaction(transport: CommitTransport) throws {
        var options = ScenarioOptions()
        options.writers = 2
        // Enough commits that the group's CPU (counted by the kernel in 10 ms ticks) is never below one tick.
        options.txns = 150
        options.bulk = transport.benchBulk
        let scenario = try Scenario(options: options) { print("bench: \($0)") }
        let result = try scenario.bench(transport)
        #expect(result.transport == transport.rawValue && result.writers == 2)
        #expect(result.txnsCommitted == 300)
        #expect(result.commitP50Microseconds > 0 && result.txnsPerSecond > 0 && result.cpuSecondsPer1000Commits > 0)
        #expect(transport == .local ? result.tcpConnectionsPerHost == 0 : result.tcpConnectionsPerHost >= 2,
                "the master's host keeps a link to each other site; replication off, none")
        if transport == .broker { #expect(result.tcpConnectionsPerHost == 2, "one link per peer site, whatever the writers") }
        #expect(result.brokerDropped == 0, "a healthy group's brokers deliver every message")
        #expect(result.label.hasSuffix(", BULK") == transport.benchBulk, "the label says whether the row batches")
    }
}

@Suite struct ForwardedWriteTests {
    @Test func putsAtClientSitesAreCommittedAtTheMasterAndReplicatedBack() throws {
        let scenario = try Scenario(options: ScenarioOptions()) { print("forward: \($0)") }
        let keys = try scenario.forwardedPuts(5)
        #expect(keys.count == 10)
    }
}

@Suite struct JoiningSiteTests {
    @Test func aFourthSiteJoinsThroughOneMemberAndCatchesUp() throws {
        var options = ScenarioOptions()
        options.txns = 100
        let announced = try Scenario(options: options) { print("join: \($0)") }.joinFourthSite()
        #expect(!announced.isEmpty, "no site reported DB_REP_NEWSITE for site 4")
    }
}

@Suite struct ReinitializedSiteTests {
    /// A client that asked to be re-initialized moves its environment aside at its next start and is brought
    /// up to date from the master: every key committed before, while it was down, and after.
    @Test func aClientThatCannotSyncStartsAgainFromTheMaster() throws {
        var options = ScenarioOptions()
        options.writers = 1
        options.txns = 100
        let moved = try Scenario(options: options) { print("reinit: \($0)") }.reinitializeClient()
        #expect(moved.contains("REINITIALIZE"))
        #expect(moved.contains("kv.db"))
        #expect(moved.contains { $0.hasPrefix("log.") })
    }
}

@Suite struct GroupIsolationTests {
    /// Two Berkeley DB groups on the same brokers: the first commits every transaction with its quorum acks
    /// (no perm failure) alone and beside the second group's bulk load, which commits all of its own.
    @Test func twoGroupsShareTheBrokersAndEachCommitsEverything() throws {
        var options = ScenarioOptions()
        options.writers = 2
        options.txns = 100
        options.bulk = true
        var isolation = IsolationOptions()
        isolation.bulkTxns = 200
        isolation.bulkValueSize = 4096
        let rows = try Scenario(options: options) { print("isolation: \($0)") }.isolationBench(isolation)
        #expect(rows.map(\.phase) == ["alone", "beside a bulk load"])
        for row in rows { #expect(row.txnsCommitted == 200 && row.permFailures == 0, "\(row.phase)") }
        #expect(rows[1].bulkTxns == 2 * 200)
    }
}

@Suite struct CWriterTests {
    /// Writer processes in C (libdb 5.3 and librepbroker) commit with quorum acks beside the Swift replication
    /// processes; every site converges and holds every acknowledged transaction.
    @Test func cWritersCommitWithQuorumAcksAndEverySiteConverges() throws {
        var options = ScenarioOptions()
        options.txns = 150
        let result = try Scenario(options: options) { print("c-writers: \($0)") }.cWritersConverge()
        #expect(result.committed == options.writers * options.txns)
        #expect(result.acked == result.committed && result.permFailures == 0)
    }
}

@Suite struct PythonWriterTests {
    /// Python writers on Debian's bsddb3 (DBEnv.rep_set_transport) and the repbroker module commit with quorum
    /// acks beside the Swift replication processes; every site converges.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/bsddb3"), "needs python3-bsddb3"))
    func pythonWritersOnBsddb3CommitWithQuorumAcksAndEverySiteConverges() throws {
        var options = ScenarioOptions()
        options.txns = 100
        let result = try Scenario(options: options) { print("py-writers: \($0)") }.cWritersConverge(python: true)
        #expect(result.committed == options.writers * options.txns)
        #expect(result.acked == result.committed && result.permFailures == 0)
    }
}
