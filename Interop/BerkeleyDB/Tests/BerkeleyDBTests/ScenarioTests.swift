// The Berkeley DB failover scenario, with real libdb 5.3 processes through real brokers.
import BerkeleyDBScenario
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
    /// The commit benchmark's two transports, short: every transaction commits on each (no timing asserted).
    @Test(arguments: ["broker", "repmgr"])
    func aShortCommitBenchCommitsEveryTransaction(transport: String) throws {
        var options = ScenarioOptions()
        options.writers = 2
        options.txns = 30
        let scenario = try Scenario(options: options) { print("bench: \($0)") }
        let result = transport == "broker" ? try scenario.benchBroker() : try scenario.benchRepmgr()
        #expect(result.transport == transport)
        #expect(result.txnsCommitted == 60)
        #expect(result.commitP50Microseconds > 0 && result.txnsPerSecond > 0)
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
