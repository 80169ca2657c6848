// The defects outside clients found (issue 16), as scenarios: each was an ordering of events the simulator's
// invariants now watch for in every run (see MutationTests for the proof that they catch each).
@testable import BrokerSim
import BrokerCore
import BrokerWire
import Testing

@Suite struct Issue16Tests {
    /// A writer that registers while its group is congested is paused at once, like the writers already there.
    @Test func aWriterRegisteringWhileItsGroupIsCongestedIsPaused() {
        let group = Scenario(brokers: 2) { $0.flowWindowBytes = Int(Wire.minFlowWindow) }
        let reader = group.receiver(at: 2)
        let first = group.producer(at: 1)
        #expect(group.wait { group.linked([1, 2]) && reader.registered && first.registered })
        reader.slowUntil = group.sim.now + .ms(100_000)
        reader.slowBytesPerTurn = 64
        first.script = Array(repeating: (Int32(2), 2000), count: 3000)
        #expect(group.wait { group.core(1).stats(pid: 0, acceptFailures: 0).peers.first?.flows.contains { $0.paused } == true })
        let late = group.sim.workload.addClient(site: 1, group: "g1", role: .producer, startAt: group.sim.now)
        late.producing = false
        #expect(group.wait { late.registered })
        group.pass(20)
        let stats = group.core(1).stats(pid: 0, acceptFailures: 0)
        #expect(stats.clients.first { $0.name == "producer-\(late.key)" }?.paused == true)
        #expect(group.violation == nil, "\(group.violation ?? "")")
    }

    /// A site whose receiver died is down for its peers' receivers, though its broker lives; up again when
    /// a receiver registers there.
    @Test func aSiteWhoseReceiverDiesIsDownForItsPeers() {
        let group = Scenario(brokers: 2)
        let one = group.receiver(at: 1)
        let two = group.receiver(at: 2)
        #expect(group.wait { one.siteUp[2]?.up == true })
        two.kill()
        #expect(group.wait(1000) { one.siteUp[2]?.up == false })
        group.receiver(at: 2)
        #expect(group.wait(1000) { one.siteUp[2]?.up == true })
        #expect(group.violation == nil, "\(group.violation ?? "")")
    }
}
