// Peer reconnects back off exponentially from 100 ms to a 5 s cap, with +-25% jitter; the loop's idle strategies.
@testable import BrokerDaemon
import Testing

@Suite struct BackoffTests {
    @Test func redialDelaysDoubleFrom100msUpToTheCapWithJitter() {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
        var delays: [Double] = []
        for _ in 0..<10 {
            link.scheduleRedial(now: 0)
            delays.append(Double(link.nextDialAt) / 1e6)
        }
        let nominal: [Double] = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]
        for (delay, base) in zip(delays, nominal) {
            #expect(delay >= base * 0.75 && delay <= base * 1.25, "delay \(delay) ms for nominal \(base) ms")
        }
    }

    @Test func jitterSpreadsRedialsOfManyLinks() {
        let delays = (0..<50).map { _ -> UInt64 in
            let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
            link.scheduleRedial(now: 0)
            return link.nextDialAt
        }
        #expect(Set(delays).count > 40, "redials should not all happen at the same instant")
    }
}

/// The loop's idle strategies: what each does after passes without work, and that work starts them over.
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
