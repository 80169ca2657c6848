// The benchmarks' one percentile rule: the element at index count * p (clamped) of an ascending array.
extension Array where Element: Comparable {
    /// The `p` percentile (0...1) of this ascending array; nil when it is empty.
    public func percentile(_ p: Double) -> Element? {
        isEmpty ? nil : self[Swift.min(count - 1, Int(Double(count) * p))]
    }
}
