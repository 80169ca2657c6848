// The simulation's one source of randomness (the core's SplitMix64): every choice of a run (workload, delays,
// faults, each broker's own seed) comes from the run's seed, so a seed replays the run exactly.
import BrokerCore

public struct SimRandom: RandomNumberGenerator, Sendable {
    private var generator: SplitMix64

    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    public mutating func next() -> UInt64 { generator.next() }

    /// True with probability `p`.
    mutating func chance(_ p: Double) -> Bool { p > 0 && Double(next() >> 11) / Double(1 << 53) < p }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    mutating func time(_ range: ClosedRange<UInt64>) -> UInt64 { UInt64.random(in: range, using: &self) }

    /// A random element of a non-empty array.
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...items.count - 1)] }
}

/// Virtual time in nanoseconds.
typealias SimTime = UInt64

extension UInt64 {
    static func ms(_ milliseconds: UInt64) -> UInt64 { milliseconds * 1_000_000 }
}
