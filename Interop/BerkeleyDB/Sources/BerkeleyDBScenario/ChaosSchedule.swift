// The chaos run's fault schedule: drawn from a seed before the run starts, so the same seed replays the same
// faults at the same times with the same durations. Which site a fault hits is drawn too (`pick`), and read
// against the group when the fault is due (the master, or a site that may be hurt without leaving less than
// a majority whole).
import BrokerDaemon
import Foundation

public enum FaultKind: String, CaseIterable, Codable, Sendable {
    /// kill -9 of a site's broker, restarted after 0.5 to 3 s.
    case brokerKill = "broker_kill"
    /// kill -9 of a site's replication process; the site restarts it with recovery (its writers first stop).
    case replicationKill = "replication_kill"
    /// kill -9 of one writer process; a new one starts.
    case writerKill = "writer_kill"
    /// SIGSTOP of a site's broker for 2 to 5 s, then SIGCONT.
    case brokerStop = "broker_stop"
    /// The master's site cut off the bridge for 2 to 10 s.
    case partitionMaster = "partition_master"
    /// A minority of sites cut off the bridge for 2 to 10 s.
    case partitionMinority = "partition_minority"
    /// A broker restarted with another advertised address (once per run).
    case brokerMove = "broker_move"

    /// Whether the fault takes a site out of the group for a while (a writer's kill does not).
    var hurtsSite: Bool { self != .writerKill }
    var isPartition: Bool { self == .partitionMaster || self == .partitionMinority }
}

public struct PlannedFault: Codable, Sendable {
    /// Seconds from the start of the faults.
    public var at: Double
    public var kind: FaultKind
    /// Chooses the target among the sites that may be hurt when the fault is due.
    public var pick: UInt64
    /// Seconds until it heals (a stop, a partition, a broker's restart).
    public var duration: Double
}

public enum ChaosSchedule {
    /// Relative weights of the kinds drawn at random (the move is placed once, apart).
    static let weights: [(FaultKind, Int)] = [
        (.writerKill, 3), (.brokerKill, 2), (.replicationKill, 2), (.brokerStop, 2),
        (.partitionMaster, 2), (.partitionMinority, 1),
    ]

    /// Faults for `seconds`, one starting every 0.5 to 3 s, and one broker move between 30% and 70% of the run.
    /// `kinds`: only these (the move only when it is one of them).
    public static func plan(seed: UInt64, seconds: Double, kinds: Set<FaultKind> = Set(FaultKind.allCases)) -> [PlannedFault] {
        var random = SplitMix64(seed: seed)
        let weights = Self.weights.filter { kinds.contains($0.0) }
        let total = weights.reduce(0) { $0 + $1.1 }
        var faults: [PlannedFault] = []
        var at = Double.random(in: 1...3, using: &random)
        while at < seconds && total > 0 {
            var draw = Int.random(in: 0..<total, using: &random)
            var kind = FaultKind.writerKill
            for (candidate, weight) in weights {
                if draw < weight {
                    kind = candidate
                    break
                }
                draw -= weight
            }
            let duration: Double
            switch kind {
            case .brokerKill: duration = Double.random(in: 0.5...3, using: &random)
            case .brokerStop: duration = Double.random(in: 2...5, using: &random)
            case .partitionMaster, .partitionMinority: duration = Double.random(in: 2...10, using: &random)
            default: duration = 0
            }
            faults.append(PlannedFault(at: at, kind: kind, pick: random.next(), duration: duration))
            at += Double.random(in: 0.5...3, using: &random)
        }
        let moveAt = seconds * Double.random(in: 0.3...0.7, using: &random)
        if kinds.contains(.brokerMove) {
            faults.append(PlannedFault(at: moveAt, kind: .brokerMove, pick: random.next(), duration: 0))
        }
        return faults.sorted { $0.at < $1.at }
    }
}
