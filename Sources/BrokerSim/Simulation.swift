// A whole group in one process: 3 to 7 brokers (the daemon's core under a shell of memory), their clients, and
// the connections between them, on virtual time, with faults chosen by the seed. Each step moves time on a
// little, lets each broker make one pass of its duty cycle and each client one turn (in an order the seed
// picks), and checks the safety invariants. After the steps every fault heals and the run goes on until the
// group has settled, or a deadline passes; then the liveness invariants are checked. The first violation
// stops the run; `seed` replays it exactly (`repbroker-sim --seed S`).
import BrokerCore
import BrokerWire

public final class Simulation {
    public struct Options: Sendable {
        public var seed: UInt64
        /// Steps with faults (each 0.1 to 1 ms of virtual time); the settling after them is not counted.
        public var steps = 6000
        /// Brokers at the start (3...7); nil: the seed picks.
        public var brokers: Int?
        /// Every log line (otherwise warnings and errors only, the last 200 kept for a failure report).
        public var logLevel = LogLevel.warning
        /// Fixed defects reintroduced on purpose (the simulator's own tests: an invariant must catch each).
        public var mutations: Set<CoreMutation> = []
        /// The fault kinds on (nil: the seed picks, swarm style), each at the rate the seed picks.
        public var faults: Set<SimFault>?
        /// The workload's clients and the site that joins (false: a test adds the clients it wants).
        public var workload = true
        /// Changes every broker's settings after the seed picked them (a test's group key, windows, limits).
        public var settings: (@Sendable (inout CoreConfig) -> Void)?

        public init(seed: UInt64) { self.seed = seed }
    }

    public struct Outcome: Sendable, CustomStringConvertible {
        public let seed: UInt64
        /// The first violated invariant; nil when every one held.
        public let violation: String?
        /// The step it was found at.
        public let step: Int
        /// A hash of every action the cores asked for and every delivery: one seed, one hash.
        public let traceHash: UInt64
        public let virtualMilliseconds: UInt64
        public let brokers: Int
        public let faults: [String: Int]
        public let messagesSent: Int
        public let messagesDelivered: Int
        /// The last log lines (for a failure report).
        public let log: [String]

        public var description: String {
            let faultText = faults.keys.sorted().map { "\($0)=\(faults[$0]!)" }.joined(separator: " ")
            let head = "seed \(seed): \(brokers) brokers, \(virtualMilliseconds) ms virtual, \(messagesSent) sent, "
                + "\(messagesDelivered) delivered, faults [\(faultText)], trace \(String(traceHash, radix: 16))"
            guard let violation else { return head + ": ok" }
            return head + "\nVIOLATION at step \(step): \(violation)\nreplay: repbroker-sim --seed \(seed) --steps \(options.steps)"
        }

        let options: Options
    }

    let options: Options
    var random: SimRandom
    private(set) var now: SimTime = .ms(1)
    var brokers: [SimBroker] = []
    var clients: [SimClient] = []
    let ledger = SimLedger()
    var history = SimHistory()
    var workload: SimWorkload!
    var faults: SimFaults!
    private var connections: [SimConnection] = []
    private var timers: [(at: SimTime, order: Int, run: () -> Void)] = []
    private var timerOrder = 0
    private var segments: [UnsafeMutableRawPointer] = []
    private(set) var violations: [String] = []
    private(set) var step = 0
    private var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    let logSink: SimLogSink
    var logLevel: LogLevel { options.logLevel }

    // The settings of the run (the seed picks them; small ones make queues fill and windows close).
    let heartbeatMilliseconds: Int
    let localSocketBytes: Int
    let peerSocketBytes: Int
    let ringBytes: Int

    public init(_ options: Options) {
        self.options = options
        random = SimRandom(seed: options.seed)
        logSink = SimLogSink(echo: options.logLevel < .warning)
        heartbeatMilliseconds = random.pick([50, 100, 200])
        localSocketBytes = random.pick([16 << 10, 64 << 10, 212_992])
        peerSocketBytes = random.pick([32 << 10, 128 << 10, 1 << 20])
        ringBytes = random.pick([16 << 10, 64 << 10])
        workload = SimWorkload(world: self)
        faults = SimFaults(world: self)
        logSink.clock = { [unowned self] in now }
    }

    deinit {
        // The cores log as they close; their clock may no longer read this world.
        let end = now
        logSink.clock = { end }
        for broker in brokers where broker.alive { broker.discardCore() }
        for segment in segments { segment.deallocate() }
    }

    // MARK: addresses

    static func address(of site: Int32) -> String { "10.0.0.\(site):7000" }

    static func site(of address: String) -> Int32? {
        guard address.hasPrefix("10.0.0."), let colon = address.firstIndex(of: ":") else { return nil }
        return Int32(address[address.index(address.startIndex, offsetBy: 7)..<colon])
    }

    func broker(_ site: Int32) -> SimBroker? { brokers.first { $0.site == site } }

    /// One-way delay between two sites (fixed per pair for a run).
    func latency(_ a: Int32, _ b: Int32) -> SimTime {
        let pair = UInt64(min(a, b)) << 8 | UInt64(max(a, b))
        var mixer = SimRandom(seed: options.seed ^ pair &* 0x9E37_79B9)
        return mixer.time(50_000...(.ms(5)))
    }

    // MARK: running

    /// Runs the steps, heals, settles and checks; returns what happened.
    public func run() -> Outcome {
        start()
        while step < options.steps, violations.isEmpty {
            step += 1
            advance(by: random.time(100_000...1_000_000))
            faults.inject()
            checkSafety()
        }
        if violations.isEmpty {
            faults.healAll()
            workload.stopProducing()
            settle()
        }
        return Outcome(seed: options.seed, violation: violations.first, step: step, traceHash: hash,
                       virtualMilliseconds: now / 1_000_000, brokers: workload.initialSites.count,
                       faults: faults.counts, messagesSent: ledger.messagesSent,
                       messagesDelivered: ledger.messagesDelivered, log: logSink.lines, options: options)
    }

    private var started = false

    /// Starts the brokers (and the workload's clients): once, before the first step.
    func start() {
        guard !started else { return }
        started = true
        workload.setUp()
    }

    /// Steps (checking safety) until `condition` holds or `timeout` of virtual time passes; whether it held.
    @discardableResult
    func run(until condition: () -> Bool, within timeout: SimTime) -> Bool {
        start()
        let deadline = now + timeout
        while now < deadline, violations.isEmpty {
            if condition() { return true }
            step += 1
            advance(by: random.time(100_000...1_000_000))
            faults.inject()
            checkSafety()
        }
        return violations.isEmpty && condition()
    }

    /// Moves time on by `delta` and lets everything run once: due timers, arrivals, each broker's pass and
    /// each client's turn, in an order the seed picks.
    func advance(by delta: SimTime) {
        now += delta
        runTimers()
        for connection in connections {
            let held = connection.sites.map { faults.isPartitioned($0.0, $0.1) } ?? false
            connection.aToB.advance(now: now, held: held)
            connection.bToA.advance(now: now, held: held)
        }
        for broker in brokers.shuffled(using: &random) { broker.pass() }
        for client in clients.shuffled(using: &random) { client.turn() }
        if step % 64 == 0 { pruneConnections() }
    }

    /// After the faults: runs until every liveness condition holds, or fails after the deadline.
    private func settle() {
        let deadline = now + .ms(UInt64(40 * heartbeatMilliseconds) + 20_000)
        var waiting: String?
        while now < deadline, violations.isEmpty {
            step += 1
            advance(by: random.time(100_000...1_000_000))
            checkSafety()
            if step % 50 == 0 {
                waiting = unsettled()
                if waiting == nil { break }
            }
        }
        guard violations.isEmpty else { return }
        if let waiting = waiting ?? unsettled() {
            violation("not settled \(((deadline - faults.healedAt) / 1_000_000)) ms after every fault healed: \(waiting)")
            return
        }
        checkDeliveries()
    }

    // MARK: the shell's services

    /// A broker dialled: the connect completes after the link's delay (refused when nobody listens; never
    /// while the sites are partitioned: the dialler's handshake deadline ends it).
    func connect(_ connection: SimConnection, dialer: Int32, id: ConnectionID) {
        guard case .broker(let target) = connection.b else { return }
        schedule(after: connection.delay) { [self] in
            guard let from = broker(dialer), from.alive else { return }
            guard let to = broker(target), to.alive else { return from.dialCompleted(id, nil) }
            if faults.isPartitioned(dialer, target) { return }
            connections.append(connection)
            from.dialCompleted(id, connection)
            // The kernel completes the connect; a stopped broker accepts it when it goes on (a broker that
            // crashed meanwhile never does: its listener's backlog went with it, and the connection resets).
            let life = to.crashes
            schedule(after: to.pausedUntil > now ? to.pausedUntil - now : 0) {
                guard to.alive, to.crashes == life else {
                    connection.aToB.reset()
                    connection.bToA.reset()
                    return
                }
                to.acceptPeer(connection)
            }
        }
    }

    func disconnected(_ client: SimClient, _ connection: SimConnection) {}

    func registerConnection(_ connection: SimConnection) { connections.append(connection) }

    func allocateSegment(bytes: Int) -> UnsafeMutableRawPointer {
        let base = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        segments.append(base)
        return base
    }

    func schedule(after delay: SimTime, _ run: @escaping () -> Void) {
        timerOrder += 1
        let entry = (at: now + delay, order: timerOrder, run: run)
        let position = timers.firstIndex { ($0.at, $0.order) > (entry.at, entry.order) } ?? timers.count
        timers.insert(entry, at: position)
    }

    private func runTimers() {
        while let first = timers.first, first.at <= now {
            timers.removeFirst()
            first.run()
        }
    }

    private func pruneConnections() {
        connections.removeAll { connection in
            let aDone = connection.aToB.wasReset || (connection.aToB.finished && connection.aToB.isIdle)
            let bDone = connection.bToA.wasReset || (connection.bToA.finished && connection.bToA.isIdle)
            return aDone && bDone
        }
    }

    // MARK: reports

    func fatal(site: Int32, _ reason: String) {
        violation("site \(site) stopped: \(reason)")
    }

    func violation(_ text: String) {
        violations.append(text)
    }

    func note(_ text: String) {
        if options.logLevel <= .debug { logSink.write(.debug, label: "sim", text, [:]) }
    }

    func roleChanged(_ client: SimClient) {
        trace(UInt64(client.index) << 8 | UInt64(client.roleState.rawValue))
    }

    /// Folds `value` into the trace hash (FNV-1a over its bytes).
    func trace(_ value: Int) { trace(UInt64(bitPattern: Int64(value))) }

    func trace(_ value: UInt64) {
        var value = value
        for _ in 0..<8 {
            hash = (hash ^ (value & 0xFF)) &* 0x0000_0100_0000_01B3
            value >>= 8
        }
    }

    func trace(_ action: CoreAction) {
        switch action {
        case .close(let id, let lastWords): trace(1 << 40 | UInt64(id) << 8 | UInt64(lastWords.count & 0xFF))
        case .setReading(let id, let paused): trace(2 << 40 | UInt64(id) << 1 | (paused ? 1 : 0))
        case .stopWatching(let id): trace(3 << 40 | UInt64(id))
        case .welcome(let id, let welcome): trace(4 << 40 | UInt64(id) << 8 | UInt64(welcome.roleState.rawValue))
        case .dial(let site, _): trace(5 << 40 | UInt64(UInt32(bitPattern: site)))
        case .dialJoin(let index, _): trace(6 << 40 | UInt64(index))
        case .saveMembership(let records): trace(7 << 40 | UInt64(records.count))
        case .trimMemory: trace(8 << 40)
        case .fatal: trace(9 << 40)
        }
    }
}

/// Where the cores' log lines go in a simulation: the last 200 are kept for a failure report.
final class SimLogSink: LogSink, @unchecked Sendable {
    private(set) var lines: [String] = []
    let echo: Bool
    /// The virtual time, for the lines' timestamps.
    var clock: () -> SimTime = { 0 }

    init(echo: Bool) { self.echo = echo }

    func write(_ level: LogLevel, label: String, _ message: String, _ metadata: Logger.Metadata) {
        let time = clock()
        let micros = String(time / 1000 % 1_000_000)
        let stamp = "\(time / 1_000_000_000).\(String(repeating: "0", count: 6 - micros.count) + micros)"
        let line = Logger.line(timestamp: stamp, level, label: label, message, metadata)
        if echo { print(line, terminator: "") }
        lines.append(line)
        if lines.count > 400 { lines.removeFirst(200) }
    }
}
