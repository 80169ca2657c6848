// The chaos run's schedule: a seed replays it exactly, and it holds what the run promises (every kind drawn,
// one broker move, durations in their ranges).
import BerkeleyDBScenario
import Testing

@Suite struct ChaosScheduleTests {
    @Test func aSeedReplaysTheSameScheduleAndAnotherSeedDoesNot() throws {
        let first = ChaosSchedule.plan(seed: 42, seconds: 600)
        let again = ChaosSchedule.plan(seed: 42, seconds: 600)
        let other = ChaosSchedule.plan(seed: 43, seconds: 600)
        #expect(first.map(\.at) == again.map(\.at) && first.map(\.kind) == again.map(\.kind))
        #expect(first.map(\.pick) == again.map(\.pick) && first.map(\.duration) == again.map(\.duration))
        #expect(first.map(\.kind) != other.map(\.kind))
    }

    @Test func aScheduleHasEveryKindOneMoveAndDurationsInRange() throws {
        let plan = ChaosSchedule.plan(seed: 7, seconds: 1800)
        #expect(Set(plan.map(\.kind)) == Set(FaultKind.allCases))
        #expect(plan.filter { $0.kind == .brokerMove }.count == 1)
        #expect(plan.map(\.at) == plan.map(\.at).sorted() && plan.allSatisfy { $0.at < 1800 })
        for fault in plan {
            switch fault.kind {
            case .brokerKill: #expect((0.5...3).contains(fault.duration))
            case .brokerStop: #expect((2...5).contains(fault.duration))
            case .partitionMaster, .partitionMinority: #expect((2...10).contains(fault.duration))
            default: #expect(fault.duration == 0)
            }
        }
        // Faults start 0.5 to 3 s apart, so half an hour holds hundreds of them.
        #expect(plan.count > 500)
    }

    @Test func failoverFiguresAreTheMedianNinetiethPercentileAndLongest() throws {
        let figures = try #require(FailoverFigures([900, 200, 3100, 950, 11_900, 920, 880, 210, 970, 990]))
        #expect(figures == FailoverFigures(count: 10, medianMilliseconds: 950, p90Milliseconds: 11_900,
                                           longestMilliseconds: 11_900))
        #expect(FailoverFigures([]) == nil)
    }

    @Test func aFailoverIsOverlappedByFaultsThatBeganDuringItOrWereStillActive() {
        let s: UInt64 = 1_000_000_000
        let cause = AppliedFault(at: 100 * s, until: 105 * s, kind: .partitionMaster, sites: [1])
        let during = AppliedFault(at: 103 * s, until: 108 * s, kind: .partitionMinority, sites: [3])
        let stillActive = AppliedFault(at: 98 * s, until: 101 * s, kind: .brokerStop, sites: [4])
        let endedBefore = AppliedFault(at: 90 * s, until: 99 * s, kind: .brokerStop, sites: [5])
        let after = AppliedFault(at: 113 * s, until: 113 * s, kind: .replicationKill, sites: [2])
        let applied = [endedBefore, stillActive, cause, during, after]
        #expect(AppliedFault.overlapping(failoverAt: 100 * s, site: 1, until: 112 * s, in: applied) == [stillActive, during])
        #expect(AppliedFault.overlapping(failoverAt: 100 * s, site: 1, until: 102 * s, in: [cause, during]).isEmpty)
    }
}
