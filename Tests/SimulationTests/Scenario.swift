// A scripted group for in-process tests: brokers on virtual time with no workload and no faults but those a
// test makes, clients a test adds, and conditions waited for within a virtual deadline. Time moves only when
// the test steps it; nothing here sleeps.
@testable import BrokerSim
import BrokerCore
import BrokerWire

final class Scenario {
    let sim: Simulation

    init(brokers: Int = 3, seed: UInt64 = 1, settings: (@Sendable (inout CoreConfig) -> Void)? = nil) {
        var options = Simulation.Options(seed: seed)
        options.brokers = brokers
        options.workload = false
        options.faults = []
        options.settings = settings
        sim = Simulation(options)
        sim.start()
    }

    func broker(_ site: Int32) -> SimBroker { sim.broker(site)! }
    func core(_ site: Int32) -> Core { sim.broker(site)!.core }

    @discardableResult
    func receiver(at site: Int32, group: String = "g1") -> SimClient {
        sim.workload.addClient(site: site, group: group, role: .receiver, startAt: sim.now)
    }

    func producer(at site: Int32, group: String = "g1") -> SimClient {
        let client = sim.workload.addClient(site: site, group: group, role: .producer, startAt: sim.now)
        client.producing = false
        return client
    }

    /// Steps until `condition` holds; false when `milliseconds` of virtual time pass first (or a safety
    /// invariant breaks: see `violation`).
    @discardableResult
    func wait(_ milliseconds: UInt64 = 5000, until condition: () -> Bool) -> Bool {
        sim.run(until: condition, within: .ms(milliseconds))
    }

    /// Lets `milliseconds` of virtual time pass.
    func pass(_ milliseconds: UInt64) {
        _ = sim.run(until: { false }, within: .ms(milliseconds))
    }

    var violation: String? { sim.violations.first }

    /// Every pair of the sites linked.
    func linked(_ sites: [Int32]) -> Bool {
        sites.allSatisfy { site in
            sim.broker(site)!.alive && Set(core(site).linkedSites).isSuperset(of: sites.filter { $0 != site })
        }
    }

    func delivered(_ producer: SimClient, _ sequence: UInt64, at site: Int32) -> Bool {
        sim.ledger.wasDelivered(key: producer.key, sequence: sequence, at: site)
    }

    func status(_ producer: SimClient, _ sequence: UInt64) -> SendStatus? {
        sim.ledger.sent[producer.key]?[Int(sequence) - 1].status
    }

    func partition(_ a: Int32, _ b: Int32, milliseconds: UInt64) {
        sim.faults.partition(a, b, until: sim.now + .ms(milliseconds))
    }
}
