// A latency histogram the core keeps without reading a clock: the caller gives each value and the time.
// Buckets 1-2.5-5 per decade from 1 us to 10 s and one above, counted since start (Prometheus histograms are
// cumulative), plus the last minute in six 10-second slots for the stats' p50, p99 and max. Every array is
// made once, at init: recording allocates nothing.

public struct LatencyHistogram: Sendable {
    /// Upper bounds of the buckets in nanoseconds (le); one more bucket holds what is above the last.
    public static let boundsNanoseconds: [UInt64] = {
        var bounds: [UInt64] = []
        var decade: UInt64 = 1_000
        while decade <= 1_000_000_000 {
            bounds.append(decade)
            bounds.append(decade * 5 / 2)
            bounds.append(decade * 5)
            decade *= 10
        }
        bounds.append(10_000_000_000)
        return bounds
    }()
    static let bucketCount = boundsNanoseconds.count + 1
    static let slotNanoseconds: UInt64 = 10_000_000_000
    static let slots = 6

    /// Per bucket since start (not cumulative across buckets).
    public private(set) var counts: [Int]
    public private(set) var count = 0
    public private(set) var sumNanoseconds: UInt64 = 0
    /// The last minute: per slot, its bucket counts, its largest value and the 10-second epoch it holds.
    private var slotCounts: [Int]
    private var slotMax: [UInt64]
    private var slotEpoch: [UInt64]

    public init() {
        counts = Array(repeating: 0, count: Self.bucketCount)
        slotCounts = Array(repeating: 0, count: Self.bucketCount * Self.slots)
        slotMax = Array(repeating: 0, count: Self.slots)
        slotEpoch = Array(repeating: UInt64.max, count: Self.slots)
    }

    /// The bucket that holds `nanoseconds`.
    @inline(__always)
    static func bucket(of nanoseconds: UInt64) -> Int {
        var low = 0, high = boundsNanoseconds.count
        while low < high {
            let middle = (low + high) / 2
            if boundsNanoseconds[middle] < nanoseconds { low = middle + 1 } else { high = middle }
        }
        return low
    }

    public mutating func record(_ nanoseconds: UInt64, now: UInt64) {
        let bucket = Self.bucket(of: nanoseconds)
        counts[bucket] += 1
        count += 1
        sumNanoseconds &+= nanoseconds
        let epoch = now / Self.slotNanoseconds
        let slot = Int(epoch % UInt64(Self.slots))
        if slotEpoch[slot] != epoch {
            slotEpoch[slot] = epoch
            slotMax[slot] = 0
            for index in slot * Self.bucketCount..<(slot + 1) * Self.bucketCount { slotCounts[index] = 0 }
        }
        slotCounts[slot * Self.bucketCount + bucket] += 1
        if nanoseconds > slotMax[slot] { slotMax[slot] = nanoseconds }
    }

    /// The last minute at `now` (the current slot and the five before it).
    public func lastMinute(now: UInt64) -> LatencySummary {
        let epoch = now / Self.slotNanoseconds
        var buckets = [Int](repeating: 0, count: Self.bucketCount)
        var total = 0
        var largest: UInt64 = 0
        for slot in 0..<Self.slots where slotEpoch[slot] != .max && slotEpoch[slot] <= epoch
            && epoch - slotEpoch[slot] < UInt64(Self.slots) {
            for bucket in 0..<Self.bucketCount {
                let n = slotCounts[slot * Self.bucketCount + bucket]
                buckets[bucket] += n
                total += n
            }
            largest = max(largest, slotMax[slot])
        }
        guard total > 0 else { return LatencySummary(count: 0, p50Seconds: nil, p99Seconds: nil, maxSeconds: nil) }
        let maxSeconds = Double(largest) / 1e9
        return LatencySummary(count: total,
                              p50Seconds: min(Self.quantile(0.50, buckets, total), maxSeconds),
                              p99Seconds: min(Self.quantile(0.99, buckets, total), maxSeconds),
                              maxSeconds: maxSeconds)
    }

    /// The `q` quantile in seconds, interpolated linearly inside its bucket (as Prometheus'
    /// histogram_quantile does); the caller caps it at the largest value seen.
    static func quantile(_ q: Double, _ buckets: [Int], _ total: Int) -> Double {
        let rank = q * Double(total)
        var below = 0
        for (index, n) in buckets.enumerated() where n > 0 {
            if Double(below + n) >= rank {
                let lower = index == 0 ? 0 : Double(boundsNanoseconds[index - 1])
                let upper = index < boundsNanoseconds.count ? Double(boundsNanoseconds[index]) : lower * 2
                let within = (rank - Double(below)) / Double(n)
                return (lower + (upper - lower) * max(0, min(1, within))) / 1e9
            }
            below += n
        }
        return Double(boundsNanoseconds.last!) / 1e9
    }

    /// The document form: counts since start and the last minute.
    public func stats(now: UInt64) -> HistogramStats {
        HistogramStats(count: count, sumSeconds: Double(sumNanoseconds) / 1e9, buckets: counts, lastMinute: lastMinute(now: now))
    }
}

/// p50, p99 and max of a histogram's last minute (nil without values).
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: Int
    public var p50Seconds: Double?
    public var p99Seconds: Double?
    public var maxSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case count, p50Seconds = "p50_s", p99Seconds = "p99_s", maxSeconds = "max_s"
    }
}

/// A histogram in the stats document: `buckets[i]` counts values up to `LatencyHistogram.boundsNanoseconds[i]`
/// (and above the bound before it); the last entry counts what is above every bound.
public struct HistogramStats: Codable, Sendable {
    public var count: Int
    public var sumSeconds: Double
    public var buckets: [Int]
    public var lastMinute: LatencySummary

    enum CodingKeys: String, CodingKey {
        case count, sumSeconds = "sum_s", buckets, lastMinute = "last_minute"
    }
}
