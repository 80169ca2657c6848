// What the broker's loop does after a pass that found no work (Aeron's idle strategies are the model):
// - spin: poll again at once (lowest latency; a core stays busy);
// - backoff (default): spin a little (20 passes), then poll yielding the processor (100 passes: with more
//   busy threads than cores, the one that brings the next message gets to run), then park with timeouts
//   that grow from 1 ms to the timer period;
// - block: park at once.
// Parking means epoll_wait with a timeout, after every ring said its consumer sleeps, so a producer's
// doorbell (or a socket) ends the park: parking costs a wake-up, never a message.
#if canImport(Glibc)
import Glibc
#endif
import CRepBrokerIPC

public enum IdleStrategyKind: String, Sendable, CaseIterable {
    case backoff, spin, block
}

struct IdleStrategy {
    enum Step: Equatable {
        /// Poll again at once (after a processor pause).
        case spin
        /// Give the processor to another thread, then poll.
        case yield
        /// Wait in epoll for up to this many milliseconds.
        case park(milliseconds: Int32)
    }

    let kind: IdleStrategyKind
    /// The longest park: the timer period.
    let maxParkMilliseconds: Int32
    static let spins = 20
    static let yields = 100
    private var idlePasses = 0
    private var parkMilliseconds: Int32 = 1

    init(_ kind: IdleStrategyKind, maxParkMilliseconds: Int32) {
        self.kind = kind
        self.maxParkMilliseconds = max(1, maxParkMilliseconds)
    }

    /// A pass did work: the next idle pass starts again from the beginning.
    mutating func reset() {
        idlePasses = 0
        parkMilliseconds = 1
    }

    /// What to do after one more pass without work.
    mutating func next() -> Step {
        idlePasses += 1
        switch kind {
        case .spin:
            return .spin
        case .block:
            return .park(milliseconds: maxParkMilliseconds)
        case .backoff:
            if idlePasses <= Self.spins { return .spin }
            if idlePasses <= Self.spins + Self.yields { return .yield }
            let park = parkMilliseconds
            parkMilliseconds = min(parkMilliseconds * 2, maxParkMilliseconds)
            return .park(milliseconds: park)
        }
    }
}
