// The loop's idle strategies: what each does after passes without work, and that work starts them over.
@testable import BrokerDaemon
import Testing

@Suite struct IdleStrategyTests {
    @Test func backoffSpinsThenYieldsThenParksLongerUpToTheTimerPeriod() {
        var idle = IdleStrategy(.backoff, maxParkMilliseconds: 50)
        var steps: [IdleStrategy.Step] = []
        for _ in 0..<(IdleStrategy.spins + IdleStrategy.yields + 8) { steps.append(idle.next()) }
        #expect(steps.prefix(IdleStrategy.spins).allSatisfy { $0 == .spin })
        #expect(steps.dropFirst(IdleStrategy.spins).prefix(IdleStrategy.yields).allSatisfy { $0 == .yield })
        #expect(Array(steps.suffix(8)) == [1, 2, 4, 8, 16, 32, 50, 50].map { .park(milliseconds: $0) })
        idle.reset()
        #expect(idle.next() == .spin)
    }

    @Test func spinNeverParksAndBlockParksAtOnce() {
        var spin = IdleStrategy(.spin, maxParkMilliseconds: 50)
        #expect((0..<1000).allSatisfy { _ in spin.next() == .spin })
        var block = IdleStrategy(.block, maxParkMilliseconds: 50)
        #expect(block.next() == .park(milliseconds: 50))
    }
}
