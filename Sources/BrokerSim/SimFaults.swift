// Faults, swarm style: each seed turns some kinds on and leaves the rest off (runs with only resets find
// other bugs than runs with everything at once), each at a rate of its own. Kinds: connection resets,
// partitions between two sites (their bytes held, their dials unanswered) and their healing, a broker stopped
// for a while (SIGSTOP), a broker crash and restart (with its membership file), a client killed (a successor
// starts), a slow receiver, a writer that starts mid-run (often into a congested group), and the removal of a
// site that joined.
import BrokerCore

/// A kind of fault the simulation injects.
public enum SimFault: String, CaseIterable, Sendable {
    case reset, partition, pause, crash, clientKill, slowReceiver, lateProducer, removal
}

final class SimFaults {
    typealias Kind = SimFault

    unowned let world: Simulation
    /// Chance per step of each kind turned on.
    private var rates: [Kind: Double] = [:]
    private var partitions: [(a: Int32, b: Int32, until: SimTime)] = []
    private(set) var counts: [String: Int] = [:]
    private(set) var healedAt: SimTime = 0
    private var removed: Set<Int32> = []

    init(world: Simulation) {
        self.world = world
        for kind in Kind.allCases where world.random.chance(0.5) || world.options.faults?.contains(kind) == true {
            if let chosen = world.options.faults, !chosen.contains(kind) { continue }
            // Per step of about 0.55 ms: 0.0005 is about one a second.
            rates[kind] = world.random.pick([0.0002, 0.0005, 0.0015])
        }
    }

    var removedSites: Set<Int32> { removed }

    func isPartitioned(_ a: Int32, _ b: Int32) -> Bool {
        partitions.contains { ($0.a == a && $0.b == b) || ($0.a == b && $0.b == a) }
    }

    /// Cuts `a` from `b` until `until` (a test's partition).
    func partition(_ a: Int32, _ b: Int32, until: SimTime) {
        partitions.append((a, b, until))
    }

    private func count(_ kind: Kind) { counts[kind.rawValue, default: 0] += 1 }

    /// Ends partitions that are over and starts new faults.
    func inject() {
        partitions.removeAll { $0.until <= world.now }
        for kind in Kind.allCases {
            guard let rate = rates[kind], world.random.chance(rate) else { continue }
            start(kind)
        }
    }

    private func start(_ kind: Kind) {
        let random = { (range: ClosedRange<SimTime>) in self.world.random.time(range) }
        let live = world.brokers.filter { $0.alive && !removed.contains($0.site) }
        switch kind {
        case .reset:
            guard let connection = world.peerConnections().randomElement(using: &world.random) else { return }
            connection.aToB.reset()
            connection.bToA.reset()
        case .partition:
            guard live.count >= 2 else { return }
            let a = world.random.pick(live).site
            guard let b = live.filter({ $0.site != a }).randomElement(using: &world.random)?.site else { return }
            partitions.append((a, b, world.now + random(.ms(100)...(.ms(3000)))))
        case .pause:
            guard let broker = live.randomElement(using: &world.random) else { return }
            broker.pausedUntil = max(broker.pausedUntil, world.now + random(.ms(20)...(.ms(1500))))
        case .crash:
            guard let broker = live.randomElement(using: &world.random) else { return }
            broker.crash()
            world.crashed(broker.site)
            world.schedule(after: random(.ms(10)...(.ms(1500)))) { [self] in
                if !removed.contains(broker.site) { broker.restart() }
            }
        case .clientKill:
            guard let client = world.clients.filter({ $0.alive }).randomElement(using: &world.random) else { return }
            client.kill()
            world.killed(client)
            world.workload.replace(client, after: random(0...(.ms(500))))
        case .slowReceiver:
            guard let client = world.clients.filter({ $0.alive && $0.role == .receiver })
                .randomElement(using: &world.random) else { return }
            client.slowUntil = world.now + random(.ms(100)...(.ms(3000)))
            client.slowBytesPerTurn = world.random.pick([64, 512, 4096])
        case .lateProducer:
            guard let broker = live.randomElement(using: &world.random) else { return }
            world.workload.addClient(site: broker.site, group: world.random.pick(world.workload.groups), role: .producer,
                                     startAt: world.now)
        case .removal:
            guard let joiner = world.workload.joiner, !removed.contains(joiner),
                  let joined = world.broker(joiner), joined.alive,
                  let member = live.filter({ $0.site != joiner }).randomElement(using: &world.random) else { return }
            guard member.core.removeSite(joiner) else { return }
            member.performActions()
            removed.insert(joiner)
            joined.crash()
            world.crashed(joiner)
            for client in world.clients where client.site == joiner { client.kill() }
        }
        count(kind)
    }

    /// Every fault ends: partitions heal, stopped brokers go on, crashed ones restart, receivers read at speed.
    func healAll() {
        partitions.removeAll()
        for broker in world.brokers where !removed.contains(broker.site) {
            broker.pausedUntil = min(broker.pausedUntil, world.now)
            if !broker.alive { broker.restart() }
        }
        for client in world.clients { client.slowUntil = 0 }
        healedAt = world.now
    }
}
