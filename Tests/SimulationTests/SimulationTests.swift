// The simulation itself: one seed gives one run.
import BrokerSim
import Testing

@Suite struct SimulationTests {
    @Test func oneSeedReplaysTheSameRun() {
        var options = Simulation.Options(seed: 42)
        options.steps = 1500
        let first = Simulation(options).run()
        let second = Simulation(options).run()
        #expect(first.violation == nil, "\(first)")
        #expect(first.traceHash == second.traceHash)
        #expect(first.messagesDelivered == second.messagesDelivered)
    }
}
