// The benchmarks' one percentile rule: the element at index count * p (clamped) of an ascending array; and
// the median of rounds (the middle one, or the mean of the middle two).
extension Array where Element: Comparable {
    /// The `p` percentile (0...1) of this ascending array; nil when it is empty.
    public func percentile(_ p: Double) -> Element? {
        isEmpty ? nil : self[Swift.min(count - 1, Int(Double(count) * p))]
    }
}

extension Array where Element == Double {
    /// The median of these values in any order: the middle one, or the mean of the middle two; 0 when empty.
    public var median: Double {
        let sorted = self.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}
