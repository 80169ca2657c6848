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
