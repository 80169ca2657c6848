// Whether a peer link is alive, judged in this broker's own running time: a peer sends a HEARTBEAT whenever it
// sent nothing for one interval, so a link on which nothing arrived for three intervals is dead. Time between
// two timer ticks counts at most one interval: a broker that was not scheduled for longer (an overloaded host,
// SIGSTOP) did not read its sockets meanwhile, and does not blame its peers for that time. A decision with time
// as its input: no clock is read here.

struct Liveness {
    /// Silence, in running time, since bytes last came.
    private(set) var silentNanoseconds: UInt64 = 0

    /// One timer tick, `elapsed` after the last: `heard` tells whether bytes came since. False: the link is dead.
    mutating func tick(heard: Bool, elapsed: UInt64, interval: UInt64) -> Bool {
        if heard {
            silentNanoseconds = 0
        } else {
            silentNanoseconds += min(elapsed, interval)
        }
        return silentNanoseconds <= 3 * interval
    }

    /// A new connection: nothing unheard yet.
    mutating func reset() { silentNanoseconds = 0 }
}
