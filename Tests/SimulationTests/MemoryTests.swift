// A run lets go of what it made. A core's sessions, links, groups and clients refer to one another; a crashed
// broker's core, and every core when the world ends, must be let go of all the same (a budget of 1000 seeds in
// one process once grew to 12 GB and was killed).
@testable import BrokerCore
@testable import BrokerSim
import Testing

@Suite struct SimulationMemoryTests {
    final class Watched {
        weak var object: AnyObject?
        let what: String
        init(_ object: AnyObject, _ what: String) {
            self.object = object
            self.what = what
        }
    }

    /// What a core holds that is part of a cycle: the core itself and each of its open sessions.
    static func watch(_ core: Core, _ label: String) -> [Watched] {
        [Watched(core, "\(label) core")] + core.sessions.keys.sorted().map { Watched(core.sessions[$0]!, "\(label) session \($0)") }
    }

    @Test func crashedAndFinishedCoresAreLetGo() {
        var watched: [Watched] = []
        do {
            let group = Scenario()
            let producer = group.producer(at: 1)
            group.receiver(at: 2)
            #expect(group.wait { group.linked([1, 2, 3]) && producer.registered })
            producer.script = [(2, 64)]
            #expect(group.wait { group.delivered(producer, 1, at: 2) })
            watched += Self.watch(group.core(2), "site 2 before its crash")
            #expect(watched.count > 3, "site 2 has peer and client sessions")
            group.broker(2).crash()
            group.pass(50)
            group.broker(2).restart()
            #expect(group.wait { group.linked([1, 2, 3]) })
            #expect(watched.allSatisfy { $0.object == nil }, "held after the crash: \(watched.filter { $0.object != nil }.map(\.what))")
            for site: Int32 in 1...3 { watched += Self.watch(group.core(site), "site \(site)") }
        }
        let held = watched.filter { $0.object != nil }.map(\.what)
        #expect(held.isEmpty, "held after the world ended: \(held)")
    }
}
