// Peer liveness in the broker's own running time: three silent heartbeat intervals kill a link, anything
// heard starts the count again, and a long gap between two ticks (the broker itself was not running) counts
// as one interval only.
@testable import BrokerCore
import Testing

@Suite struct LivenessTests {
    let interval: UInt64 = 200_000_000
    let tick: UInt64 = 50_000_000

    /// Ticks `elapsed` apart with `heard`; the outcome of each.
    func run(_ liveness: inout Liveness, _ ticks: [(heard: Bool, elapsed: UInt64)]) -> [Bool] {
        ticks.map { liveness.tick(heard: $0.heard, elapsed: $0.elapsed, interval: interval) }
    }

    @Test func threeSilentIntervalsOfTicksKillALink() {
        var liveness = Liveness()
        let outcomes = run(&liveness, Array(repeating: (false, tick), count: 13))
        #expect(outcomes == Array(repeating: true, count: 12) + [false], "600 ms of 50 ms ticks, then dead at 650")
        #expect(liveness.silentNanoseconds == 13 * tick)
    }

    @Test func anythingHeardStartsTheCountAgain() {
        var liveness = Liveness()
        for _ in 0..<100 {
            let outcomes = run(&liveness, Array(repeating: (false, tick), count: 10) + [(true, tick)])
            #expect(outcomes.allSatisfy { $0 } && liveness.silentNanoseconds == 0)
        }
    }

    @Test func aBrokerThatWasNotRunningCountsOneIntervalForTheGap() {
        var liveness = Liveness()
        // Stopped for ten seconds, then three more ticks: not dead (one interval and 150 ms).
        let outcomes = run(&liveness, [(false, 10_000_000_000)] + Array(repeating: (false, tick), count: 3))
        #expect(outcomes == [true, true, true, true])
        #expect(liveness.silentNanoseconds == interval + 3 * tick)
        // Long passes on an overloaded host: each counts one interval, so four silent ones are needed.
        var starved = Liveness()
        #expect(run(&starved, Array(repeating: (false, 1_300_000_000), count: 4)) == [true, true, true, false])
        starved.reset()
        #expect(starved.silentNanoseconds == 0)
    }
}
