// Who runs at each site and what they send. Two groups: in "g1" site 1 is master, and its writer sends
// PERMANENT messages with LSNs under an ack policy the seed picks (the other sites' receivers acknowledge
// them); in "g2" every site's writers send plain messages. Each site has a receiver per group (sometimes a
// standby too) and up to two writers per group; some clients use rings, others the socket. Destinations: every
// site, one site (this one too), the master, or a site that does not exist.
import BrokerCore
import BrokerWire

final class SimWorkload {
    unowned let world: Simulation
    private(set) var initialSites: [Int32] = []
    /// A site that joins mid-run through a member (--join), when the seed has one.
    private(set) var joiner: Int32?
    private var nextKey: UInt32 = 1
    let groups = ["g1", "g2"]
    let maxMessage: Int

    init(world: Simulation) {
        self.world = world
        maxMessage = world.random.pick([64 << 10, 256 << 10])
    }

    func setUp() {
        let count = world.options.brokers ?? world.random.int(3...7)
        initialSites = (1...Int32(count)).map { $0 }
        for site in initialSites { addBroker(site, joinThrough: nil) }
        guard world.options.workload else { return }
        if world.random.chance(0.3) { joiner = Int32(count) + 1 }
        for site in initialSites {
            for group in groups { addClients(site: site, group: group, startAt: world.random.time(0...(.ms(300)))) }
        }
        if let joiner {
            world.schedule(after: world.random.time(.ms(200)...(.ms(UInt64(world.options.steps / 4))))) { [self] in
                addBroker(joiner, joinThrough: world.random.pick(initialSites))
                for group in groups { addClients(site: joiner, group: group, startAt: world.now) }
            }
        }
    }

    /// Starts a broker for `site`, with the initial sites as its peers, or joining through `member`.
    @discardableResult
    func addBroker(_ site: Int32, joinThrough member: Int32?) -> SimBroker {
        var config = CoreConfig(siteID: site)
        if let member {
            config.join = [Simulation.address(of: member)]
        } else {
            config.peers = initialSites.filter { $0 != site }.map { ($0, Simulation.address(of: $0)) }
        }
        config.listen = Simulation.address(of: site)
        config.heartbeatMilliseconds = world.heartbeatMilliseconds
        config.peerQueueBytes = world.random.pick([64 << 10, 256 << 10, 4 << 20])
        config.flowWindowBytes = world.random.pick([Int(Wire.minFlowWindow), 64 << 10, 1 << 20])
        config.maxMessageBytes = maxMessage
        config.inboundQueueBytes = world.random.pick([64 << 10, 1 << 20])
        config.clientQueueBytes = world.random.pick([64 << 10, 1 << 20])
        config.maxRingBytes = 1 << 20
        config.maxClients = 64
        config.groupGraceMilliseconds = 3_600_000
        config.mutations = world.options.mutations
        world.options.settings?(&config)
        let broker = SimBroker(site: site, config: config, world: world)
        world.brokers.append(broker)
        return broker
    }

    private func addClients(site: Int32, group: String, startAt: SimTime) {
        addClient(site: site, group: group, role: .receiver, startAt: startAt)
        if world.random.chance(0.4) { addClient(site: site, group: group, role: .receiver, startAt: startAt + .ms(5)) }
        for _ in 0..<world.random.int(0...2) { addClient(site: site, group: group, role: .producer, startAt: startAt) }
        if group == "g1" && site == 1 {
            let writer = addClient(site: site, group: group, role: .producer, startAt: startAt)
            writer.permanent = true
            writer.ackPolicy = world.random.pick([.none, .one, .quorum, .all])
        }
    }

    @discardableResult
    func addClient(site: Int32, group: String, role: SimClient.Role, startAt: SimTime) -> SimClient {
        let client = SimClient(index: world.clients.count, site: site, group: group, role: role, key: nextKey,
                               rings: world.random.chance(0.5), startAt: startAt, maxMessage: maxMessage, world: world)
        nextKey += 1
        world.clients.append(client)
        return client
    }

    /// A killed client's successor: the same part at the same site, a new process (a new key).
    func replace(_ client: SimClient, after delay: SimTime) {
        let successor = addClient(site: client.site, group: client.group, role: client.role, startAt: world.now + delay)
        successor.permanent = client.permanent
        successor.ackPolicy = client.ackPolicy
    }

    func destination(for client: SimClient) -> Int32 {
        if client.permanent { return SiteID.broadcast }
        let roll = world.random.int(0...99)
        switch roll {
        case 0..<45: return SiteID.broadcast
        case 45..<90: return world.random.pick(initialSites)
        case 90..<95: return SiteID.master
        default: return 99
        }
    }

    func messageSize() -> Int {
        let roll = world.random.int(0...999)
        switch roll {
        case 0..<900: return world.random.int(12...300)
        case 900..<995: return world.random.int(301...8 << 10)
        default: return world.random.int((8 << 10)...maxMessage)
        }
    }

    func stopProducing() {
        for client in world.clients where client.role == .producer { client.producing = false }
    }
}
