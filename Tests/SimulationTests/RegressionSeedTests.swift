// Seeds that found a defect, replayed: each failed before its fix (checked by reverting the fix and running
// the seed) and must hold now. Each defect also has a test that does not depend on the simulation's random
// choices (ReconnectStateTests, MembershipTests): a change to the simulation may move what a seed does.
import BrokerSim
import Testing

@Suite struct RegressionSeedTests {
    @Test(arguments: [
        (1, "a CREDIT queued for a dead connection raised a window past its grant"),
        (5, "a CREDIT queued for a dead connection raised a window past its grant"),
        (15, "a member cut off during a removal kept the removed site"),
        (37, "a master announcement was queued for a removed site"),
        (237, "a PEER_RECEIVER queued for a dead connection told a peer the receiver was gone"),
    ] as [(UInt64, String)])
    func seedHolds(seed: UInt64, defect: String) {
        var options = Simulation.Options(seed: seed)
        options.steps = 3000
        let outcome = Simulation(options).run()
        #expect(outcome.violation == nil, "\(defect): \(outcome)")
    }
}
