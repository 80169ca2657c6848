// bdb-chaos: a Berkeley DB group through repbroker under a seeded schedule of overlapping faults, then the proof
// that no transaction whose commit was acknowledged by a quorum was lost.
//  1. 3 to 5 sites, each with its broker (in its own network namespace on a bridge when the machine permits;
//     else on loopback, where partitions are skipped and said so), one replication process and two writers
//     that commit with the quorum ack policy whenever their site is master.
//  2. For `minutes`, the schedule's faults (ChaosSchedule): kills, stops, partitions, a broker's move. At most
//     a minority of sites is hurt at a time, so the group can always elect and commit.
//  3. Every `checkpointMinutes`, and at the end: every fault healed, the writers stopped, and a wait (with a
//     deadline) until every site's dump is identical with exactly one master. Every acknowledged key must be
//     in it.
// One JSON line reports the faults by kind, the commits, the lost keys (0), the longest convergence and
// failover (a fault hitting the master's site to the next acknowledged commit elsewhere, or there after it
// healed), and the seed.
import BrokerHarness
import BrokerSystem
import Foundation

public struct ChaosOptions: Sendable {
    public var sites = 3
    public var minutes = 1.0
    public var seed: UInt64 = UInt64.random(in: 1...999_999)
    public var heartbeatMilliseconds = 250
    public var writersPerSite = 2
    public var pauseMilliseconds = 20
    /// Heal, stop the writers and check every this many minutes (0: only at the end).
    public var checkpointMinutes = 5.0
    public var convergenceTimeout = 180.0
    /// Sites in network namespaces (partitions possible); false: loopback.
    public var namespaces = NetworkNamespaces.available
    public var keepDirectory = false
    /// Peer links over TLS 1.3 (certificates made with the openssl tool), beside the group key.
    public var tls = false
    /// The kinds of fault drawn (all by default).
    public var faultKinds = Set(FaultKind.allCases)
    public var broker: Program = .named("bdb-brokerd")
    public var site: Program = .named("bdb-site")
    /// A rolling upgrade: the brokers start as this program (the previous release's repbrokerd) and, one at a
    /// time at evenly spaced moments of the run, are stopped and started again as `broker` on the same socket
    /// and state. No other fault is drawn.
    public var upgradeFrom: Program?
    public init() {}
}

public struct ChaosResult: Codable, Sendable {
    public var seed: UInt64
    public var sites: Int
    public var seconds: Int
    public var namespaces: Bool
    public var faults: [String: Int]
    public var skipped: [String: Int]
    public var unplannedExits: [String: Int]
    public var acked: Int
    public var unacked: Int
    public var failed: Int
    public var lost: Int
    public var checks: Int
    public var longestConvergenceMilliseconds: Int
    public var failovers: Int
    public var longestFailoverMilliseconds: Int
    public var medianFailoverMilliseconds: Int
    public var masters: Int
    public var reinitializations: Int
    /// Failovers by the fault that caused them.
    public var failoversByKind: [String: FailoverFigures] = [:]
    /// Failovers longer than `FailoverFigures.longMilliseconds`, and how many of them another fault overlapped
    /// (one began before the next acknowledged commit, or one was still active when the failover began).
    public var longFailovers = 0
    public var longFailoversOverlapped = 0
    /// The brokers' peer links were TLS 1.3.
    public var tls = false
    /// With --upgrade-from: brokers upgraded, and peer connections refused by either end in any broker's log
    /// (none may be: every step must link every site).
    public var upgraded = 0
    public var refusals = 0
    enum CodingKeys: String, CodingKey {
        case tls, upgraded, refusals
        case seed, sites, seconds, namespaces, faults, skipped, acked, unacked, failed, lost, checks, failovers, masters
        case reinitializations, failoversByKind = "failovers_by_kind", longFailovers = "long_failovers"
        case longFailoversOverlapped = "long_failovers_overlapped"
        case unplannedExits = "unplanned_exits", longestConvergenceMilliseconds = "longest_convergence_ms"
        case longestFailoverMilliseconds = "longest_failover_ms", medianFailoverMilliseconds = "median_failover_ms"
    }
}

/// One fault kind's failovers: count, median, 90th percentile and longest, in milliseconds.
public struct FailoverFigures: Codable, Sendable, Equatable {
    public var count: Int
    public var medianMilliseconds: Int
    public var p90Milliseconds: Int
    public var longestMilliseconds: Int
    /// A failover this long is reported with the faults that overlapped it.
    public static let longMilliseconds = 3000
    enum CodingKeys: String, CodingKey {
        case count, medianMilliseconds = "median_ms", p90Milliseconds = "p90_ms", longestMilliseconds = "longest_ms"
    }

    public init?(_ milliseconds: [Int]) {
        let sorted = milliseconds.sorted()
        guard let median = sorted.percentile(0.5), let p90 = sorted.percentile(0.9), let longest = sorted.last else {
            return nil
        }
        self.init(count: sorted.count, medianMilliseconds: median, p90Milliseconds: p90, longestMilliseconds: longest)
    }

    public init(count: Int, medianMilliseconds: Int, p90Milliseconds: Int, longestMilliseconds: Int) {
        self.count = count
        self.medianMilliseconds = medianMilliseconds
        self.p90Milliseconds = p90Milliseconds
        self.longestMilliseconds = longestMilliseconds
    }
}

/// A fault the run applied: when it began, when it was planned to end (its start for kills) and where.
public struct AppliedFault: Sendable, Equatable {
    public var at: UInt64
    public var until: UInt64
    public var kind: FaultKind
    public var sites: [Int32]

    public init(at: UInt64, until: UInt64, kind: FaultKind, sites: [Int32]) {
        self.at = at
        self.until = until
        self.kind = kind
        self.sites = sites
    }

    /// The faults that overlapped a failover from `failoverAt` (the fault on the master's `site`) to the next
    /// acknowledged commit at `until`: those that began during it, and those still active when it began. The
    /// fault that caused it is not one of them.
    public static func overlapping(failoverAt: UInt64, site: Int32, until: UInt64, in applied: [AppliedFault]) -> [AppliedFault] {
        applied.filter { other in
            !(other.at == failoverAt && other.sites.contains(site))
                && ((other.at > failoverAt && other.at < until) || (other.at < failoverAt && other.until > failoverAt))
        }
    }
}

public final class Chaos: @unchecked Sendable {
    let options: ChaosOptions
    let log: (String) -> Void
    let group: ChaosGroup
    var faults: [String: Int] = [:]
    var skipped: [String: Int] = [:]
    /// Pending heals: when, which site, what.
    enum Heal { case startBroker, resume, reconnect }
    var heals: [(at: UInt64, site: Int32, heal: Heal)] = []
    /// Faults that hit the master's site: when, which site, and when that site came back (nil: not yet).
    var masterFaults: [(at: UInt64, site: Int32, healedAt: UInt64?, kind: FaultKind)] = []
    /// Every fault applied that hurts a site (writer kills aside).
    var appliedFaults: [AppliedFault] = []
    var moved = false
    /// The move waits for its turn when a minority is already hurt: it happens once in every run.
    var deferredMove: PlannedFault?
    var checks = 0
    var longestConvergence = 0
    var started: UInt64 = 0

    public init(options: ChaosOptions, log: @escaping (String) -> Void) throws {
        self.options = options
        self.log = log
        group = try ChaosGroup(options: options, log: log)
    }

    var now: UInt64 { Posix.monotonicNanoseconds() }
    func seconds(_ time: UInt64) -> String { String(format: "%.1f", Double(time &- started) / 1e9) }

    /// Sites out of the group now: a fault not healed yet, or processes not (yet) running.
    var hurtSites: Set<Int32> {
        var hurt = Set(heals.map(\.site))
        for site in group.sites where !site.brokerRunning || !site.replicateReady { hurt.insert(site.id) }
        return hurt
    }

    /// The site that says it is master, when exactly one does (a cut-off old master may still say so).
    var master: ChaosSite? {
        let masters = group.sites.filter { $0.saysMaster }
        return masters.count == 1 ? masters[0] : nil
    }

    public func run() throws -> ChaosResult {
        var failure: Error?
        defer { group.shutDown(keepDirectory: failure != nil || options.keepDirectory) }
        do {
            return try runFaults()
        } catch {
            failure = error
            log("failed; the run's directory is kept: \(group.directory.path)\n\(group.diagnostics())")
            throw error
        }
    }

    func runFaults() throws -> ChaosResult {
        let seconds = options.minutes * 60
        let plan = ChaosSchedule.plan(seed: options.seed, seconds: seconds, kinds: options.faultKinds)
        log("seed \(options.seed): \(plan.count) faults over \(Int(seconds)) s, \(options.sites) sites "
            + (options.namespaces ? "in network namespaces" : "on loopback, partitions skipped ("
                + (NetworkNamespaces.available ? "--loopback" : NetworkNamespaces.unavailableReason) + ")")
            + (options.tls ? ", TLS 1.3 peer links" : ""))
        try group.start()
        started = now
        log("t=0 is \(ISO8601DateFormatter().string(from: Date())) (the brokers' logs use wall-clock time)")
        var faultClock = 0.0
        var lastTick = now
        var nextCheckpoint = options.checkpointMinutes > 0 ? options.checkpointMinutes * 60 : .infinity
        var index = 0
        // A rolling upgrade: site k is upgraded at k / (sites + 1) of the run.
        var upgrades = options.upgradeFrom == nil ? [] : (1...options.sites).map {
            (at: seconds * Double($0) / Double(options.sites + 1), site: Int32($0))
        }
        while faultClock < seconds {
            if let next = upgrades.first, next.at <= faultClock {
                upgrades.removeFirst()
                try upgrade(group.site(next.site))
            }
            let tick = now
            faultClock += Double(tick - lastTick) / 1e9
            lastTick = tick
            while index < plan.count, plan[index].at <= faultClock {
                apply(plan[index])
                index += 1
            }
            healDue()
            if let move = deferredMove, hurtSites.count < (options.sites - 1) / 2 {
                deferredMove = nil
                apply(move)
            }
            group.supervise(brokerHeld: Set(heals.filter { $0.heal == .startBroker }.map(\.site)))
            noteRecoveries()
            if faultClock >= nextCheckpoint {
                try check(final: false)
                nextCheckpoint += options.checkpointMinutes * 60
                lastTick = now
            }
            usleep(50_000)
        }
        let masters = try check(final: true)
        let timed = failoverTimes()
        let failovers = timed.map(\.milliseconds)
        let lost = group.commits.acked.count - (lastKeys.map { group.commits.acked.intersection($0).count } ?? 0)
        return ChaosResult(
            seed: options.seed, sites: options.sites, seconds: Int(seconds), namespaces: options.namespaces,
            faults: faults, skipped: skipped, unplannedExits: group.unplannedExits, acked: group.commits.acked.count,
            unacked: group.commits.unacked, failed: group.commits.failed, lost: lost, checks: checks,
            longestConvergenceMilliseconds: longestConvergence, failovers: failovers.count,
            longestFailoverMilliseconds: failovers.max() ?? 0,
            medianFailoverMilliseconds: failovers.isEmpty ? 0 : failovers.sorted()[failovers.count / 2], masters: masters,
            reinitializations: group.reinitializations,
            failoversByKind: Dictionary(grouping: timed, by: \.kind).compactMapValues { FailoverFigures($0.map(\.milliseconds)) },
            longFailovers: timed.filter { $0.milliseconds > FailoverFigures.longMilliseconds }.count,
            longFailoversOverlapped: timed.filter { $0.milliseconds > FailoverFigures.longMilliseconds && $0.overlapped }.count,
            tls: options.tls, upgraded: upgradedCount, refusals: refusals())
    }

    // MARK: upgrades

    var upgradedCount = 0

    /// Stops the site's broker (SIGTERM), starts this release's in its place, and waits until every broker
    /// links with every other again.
    func upgrade(_ site: ChaosSite) throws {
        let wasMaster = master?.id == site.id
        site.broker.terminate()
        site.broker.program = group.hosts.map { $0.program(options.broker, in: site.id) } ?? options.broker
        try site.broker.start()
        upgradedCount += 1
        log("t=\(seconds(now)) s: site \(site.id)'s broker upgraded" + (wasMaster ? " (the master)" : ""))
        for other in group.sites where !other.broker.waitForPeers(timeout: 30) {
            throw ScenarioFailure("after site \(site.id)'s upgrade, site \(other.id) did not link to every peer: "
                + other.broker.log.suffix(1500))
        }
    }

    /// Peer connections refused, by either end, in every broker's log.
    func refusals() -> Int {
        group.sites.reduce(0) { total, site in
            total + site.broker.log.components(separatedBy: "peer connection refused").count - 1
                + site.broker.log.components(separatedBy: "peer refused the connection").count - 1
        }
    }

    // MARK: faults

    func apply(_ fault: PlannedFault) {
        let hurt = hurtSites
        let budget = (options.sites - 1) / 2
        let healthy = group.sites.filter { !hurt.contains($0.id) }
        func skip(_ why: String) {
            skipped[why, default: 0] += 1
            log("t=\(seconds(now)) s: \(fault.kind.rawValue) skipped: \(why)")
        }
        if fault.kind.isPartition && !options.namespaces { return skip("partition_without_namespaces") }
        if fault.kind == .brokerMove && moved { return skip("second_move") }
        if fault.kind.hurtsSite && hurt.count >= budget {
            if fault.kind == .brokerMove {
                deferredMove = fault
                return
            }
            return skip("minority_already_hurt")
        }
        var kind = fault.kind
        var targets: [ChaosSite] = []
        switch fault.kind {
        case .writerKill:
            let running = group.sites.filter { $0.writers.contains { $0?.isRunning == true } }
            guard !running.isEmpty else { return skip("no_writer_running") }
            let site = running[Int(fault.pick % UInt64(running.count))]
            let writers = site.writers.indices.filter { site.writers[$0]?.isRunning == true }
            site.writers[writers[Int((fault.pick >> 32) % UInt64(writers.count))]]?.kill9()
            targets = [site]
        case .partitionMaster:
            if let master, !hurt.contains(master.id) {
                targets = [master]
            } else {
                kind = .partitionMinority
                targets = [healthy[Int(fault.pick % UInt64(healthy.count))]]
            }
        case .partitionMinority:
            let count = 1 + Int((fault.pick >> 32) % UInt64(budget - hurt.count))
            var pool = healthy
            for step in 0..<count {
                targets.append(pool.remove(at: Int((fault.pick >> UInt64(step * 8)) % UInt64(pool.count))))
            }
        default:
            targets = [healthy[Int(fault.pick % UInt64(healthy.count))]]
        }
        let masterID = master?.id
        let heal = now + UInt64(fault.duration * 1e9)
        for site in targets {
            switch kind {
            case .brokerKill:
                site.broker.kill9()
                heals.append((heal, site.id, .startBroker))
            case .replicationKill:
                site.replicate?.kill9()
            case .brokerStop:
                site.broker.child?.signal(SIGSTOP)
                heals.append((heal, site.id, .resume))
            case .partitionMaster, .partitionMinority:
                do { try group.hosts?.setConnected(site.id, false) } catch { log("partition failed: \(error)") }
                heals.append((heal, site.id, .reconnect))
            case .brokerMove:
                moved = true
                do { try group.move(site) } catch { log("site \(site.id): the move failed: \(error)") }
            case .writerKill:
                break
            }
            if kind != .writerKill, site.id == masterID {
                masterFaults.append((now, site.id, kind == .brokerMove ? now : nil, kind))
            }
        }
        faults[kind.rawValue, default: 0] += 1
        if kind != .writerKill { appliedFaults.append(AppliedFault(at: now, until: heal, kind: kind, sites: targets.map(\.id))) }
        log("t=\(seconds(now)) s: \(kind.rawValue) site \(targets.map(\.id))"
            + (fault.duration > 0 && kind != .writerKill ? " for \(String(format: "%.1f", fault.duration)) s" : "")
            + (targets.contains { $0.id == masterID } ? " (the master)" : ""))
    }

    func healDue() {
        let due = heals.filter { $0.at <= now }
        heals.removeAll { $0.at <= now }
        for item in due { heal(item.site, item.heal) }
    }

    func heal(_ id: Int32, _ heal: Heal) {
        let site = group.site(id)
        switch heal {
        case .startBroker: do { try site.broker.start() } catch { log("site \(id): broker restart failed: \(error)") }
        case .resume: site.broker.child?.signal(SIGCONT)
        case .reconnect: try? group.hosts?.setConnected(id, true)
        }
        if !heals.contains(where: { $0.site == id }) { markHealed(id) }
    }

    func markHealed(_ id: Int32) {
        for index in masterFaults.indices where masterFaults[index].site == id && masterFaults[index].healedAt == nil {
            masterFaults[index].healedAt = now
        }
    }

    /// A master's site whose replication process was killed is back once its new process is ready.
    func noteRecoveries() {
        for site in group.sites where site.replicateReady && !heals.contains(where: { $0.site == site.id }) {
            markHealed(site.id)
        }
    }

    /// For each fault that hit the master's site: milliseconds until the next acknowledged commit at another
    /// site, or at that site after it came back; and whether another fault overlapped it (began before that
    /// commit, or was still active when the failover began), which the long ones are logged with.
    func failoverTimes() -> [(kind: String, milliseconds: Int, overlapped: Bool)] {
        let acks = group.commits.ackTimes.sorted { $0.0 < $1.0 }
        return masterFaults.compactMap { fault in
            guard let next = acks.first(where: { $0.0 > fault.at && ($0.1 != fault.site || $0.0 > (fault.healedAt ?? .max)) })
            else { return nil }
            let milliseconds = Int((next.0 - fault.at) / 1_000_000)
            let others = AppliedFault.overlapping(failoverAt: fault.at, site: fault.site, until: next.0, in: appliedFaults)
            var line = "failover: \(fault.kind.rawValue) of master site \(fault.site) at t=\(seconds(fault.at)) s: next "
                + "acknowledged commit \(milliseconds) ms later, at site \(next.1)"
            if milliseconds > FailoverFigures.longMilliseconds {
                line += others.isEmpty ? "; no other fault overlapped it"
                    : "; overlapped by " + others.map { "\($0.kind.rawValue) \($0.sites) at t=\(seconds($0.at)) s" }
                        .joined(separator: ", ")
            }
            log(line)
            return (fault.kind.rawValue, milliseconds, !others.isEmpty)
        }
    }

    /// The failover figures by fault kind, as a table.
    public static func failoverTable(_ result: ChaosResult) -> String {
        var out = "failovers by fault on the master's site (count, median / 90th percentile / longest):\n"
        for (kind, figures) in result.failoversByKind.sorted(by: { $0.key < $1.key }) {
            out += "  " + kind.padding(toLength: 20, withPad: " ", startingAt: 0) + String(
                format: "%4d: %.2f / %.2f / %.2f s\n", figures.count, Double(figures.medianMilliseconds) / 1000,
                Double(figures.p90Milliseconds) / 1000, Double(figures.longestMilliseconds) / 1000)
        }
        out += "longer than \(FailoverFigures.longMilliseconds / 1000) s: \(result.longFailovers), of which "
            + "\(result.longFailoversOverlapped) overlapped by another fault"
        return out
    }

    // MARK: checks

    var lastKeys: Set<String>?

    /// Heals everything, stops the writers, waits until every dump is identical with one master, and checks
    /// that every acknowledged key is there. Returns the number of masters.
    @discardableResult
    func check(final: Bool) throws -> Int {
        let healStarted = now
        for item in heals { heal(item.site, item.heal) }
        heals.removeAll()
        group.writersPaused = true
        defer { group.writersPaused = false }
        group.stopWriters()
        var dumps: [[String]] = []
        var roles: [String] = []
        let converged = Deadline.wait(timeout: options.convergenceTimeout, interval: 1) {
            group.supervise(brokerHeld: [])
            guard group.sites.allSatisfy({ $0.brokerRunning && $0.replicateReady }) else { return false }
            roles = group.sites.compactMap { group.role($0) }
            dumps = group.sites.compactMap { group.dump($0) }
            return dumps.count == group.sites.count && dumps.allSatisfy { $0 == dumps[0] }
                && roles.filter { $0 == "master" }.count == 1
        }
        let milliseconds = Int((now - healStarted) / 1_000_000)
        checks += 1
        guard converged else {
            throw ScenarioFailure("no convergence within \(Int(options.convergenceTimeout)) s: roles \(roles), dump sizes "
                + "\(dumps.map(\.count))")
        }
        longestConvergence = max(longestConvergence, milliseconds)
        let keys = Set(dumps[0].compactMap { $0.split(separator: "=").first.map(String.init) })
        lastKeys = keys
        let lost = group.commits.acked.subtracting(keys)
        log("t=\(seconds(now)) s: check \(checks): converged in \(milliseconds) ms, \(keys.count) keys, "
            + "\(group.commits.acked.count) acknowledged, \(lost.count) lost, master site "
            + "\(group.sites.first { $0.saysMaster }?.id ?? 0)")
        guard lost.isEmpty else {
            let report = lost.sorted().map { key in
                "\(key) acknowledged at t=\(group.commits.ackedAt[key].map { seconds($0) } ?? "?") s"
            }.joined(separator: "\n")
            _ = FileManager.default.createFile(atPath: group.directory.path + "/lost.txt", contents: Data((report + "\n").utf8))
            let times = lost.compactMap { group.commits.ackedAt[$0] }
            log("lost keys were acknowledged from t=\(times.min().map { seconds($0) } ?? "?") s to "
                + "t=\(times.max().map { seconds($0) } ?? "?") s (lost.txt in the run's directory)")
            throw ScenarioFailure("\(lost.count) acknowledged transactions lost, e.g. \(lost.sorted().prefix(5))")
        }
        return roles.filter { $0 == "master" }.count
    }
}
