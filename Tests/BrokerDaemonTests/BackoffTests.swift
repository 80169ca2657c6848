// Peer reconnects back off exponentially from 100 ms to a 5 s cap, with +-25% jitter.
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
