// Peer reconnects back off exponentially from 100 ms to a 5 s cap, with +-25% jitter from the core's seeded
// randomness (one seed, one schedule).
@testable import BrokerCore
import Testing

@Suite struct BackoffTests {
    @Test func redialDelaysDoubleFrom100msUpToTheCapWithJitter() {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
        var random = CoreRandom(seed: 42)
        var delays: [Double] = []
        for _ in 0..<10 {
            link.scheduleRedial(now: 0, random: &random)
            delays.append(Double(link.nextDialAt) / 1e6)
        }
        let nominal: [Double] = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]
        for (delay, base) in zip(delays, nominal) {
            #expect(delay >= base * 0.75 && delay <= base * 1.25, "delay \(delay) ms for nominal \(base) ms")
        }
    }

    @Test func jitterSpreadsRedialsOfManyLinks() {
        var random = CoreRandom(seed: 7)
        let delays = (0..<50).map { _ -> UInt64 in
            let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
            link.scheduleRedial(now: 0, random: &random)
            return link.nextDialAt
        }
        #expect(Set(delays).count > 40, "redials should not all happen at the same instant")
    }

    @Test func oneSeedGivesOneSchedule() {
        func schedule(seed: UInt64) -> [UInt64] {
            var random = CoreRandom(seed: seed)
            let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
            return (0..<8).map { _ in
                link.scheduleRedial(now: 0, random: &random)
                return link.nextDialAt
            }
        }
        #expect(schedule(seed: 11) == schedule(seed: 11))
        #expect(schedule(seed: 11) != schedule(seed: 12))
    }
}
