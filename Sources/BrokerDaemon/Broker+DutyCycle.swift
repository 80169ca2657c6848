// The broker's loop as a duty cycle. Each pass does the work there is, phase by phase, and says how much:
// sockets (epoll without waiting), rings (each client's to-broker ring drained and routed, its to-client ring
// filled from its queue), timers, flush (every connection with new output written once). A pass that found
// nothing hands over to the idle strategy (IdleStrategy.swift), which spins, yields or parks.
#if canImport(Glibc)
import Glibc
#endif
import BrokerSystem
import BrokerWire
import CRepBrokerIPC

extension Broker {
    /// Runs the loop until `requestStop`, then flushes peers (bounded) and releases everything.
    public func run() throws {
        var idle = IdleStrategy(config.idleStrategy, maxParkMilliseconds: tickMilliseconds)
        while !stopper.isRequested {
            if try doWork() > 0 {
                idle.reset()
                continue
            }
            switch idle.next() {
            case .spin: rb_cpu_relax()
            case .yield: sched_yield()
            case .park(let milliseconds): if try park(milliseconds: milliseconds) > 0 { idle.reset() }
            }
        }
        try shutDown()
        if let fatalReason { throw BrokerFailure(reason: fatalReason) }
    }

    /// One pass; returns the work done (events, ring records and fills, connections flushed). Timers run on
    /// their schedule and do not count: a broker idle but for its heartbeats keeps parking.
    func doWork() throws(SystemError) -> Int {
        now = Posix.monotonicNanoseconds()
        applyBackpressure()
        returnCredits()
        var work = try loop.poll(timeoutMilliseconds: 0)
        work += serviceRings()
        runTimers()
        work += loop.flushDirty()
        return work
    }

    /// Sleeps in epoll for up to `milliseconds` (never past the next timer), once every ring said its
    /// consumer sleeps so that a producer rings the loop's eventfd; returns the events handled.
    func park(milliseconds: Int32) throws(SystemError) -> Int {
        // Clients may come and go while parked: every ring there is then is marked awake again.
        defer { for client in ringClients { client.rings?.reader.awake() } }
        for client in ringClients {
            // A paused producer's records wait for its group's queues to drain, which wakes the loop (a socket
            // event, or the 1 ms look below): they do not keep it awake.
            if client.roleState != .receiver, client.$group?.with({ $0.congested }) == true { continue }
            guard let rings = client.rings, rings.reader.prepareToSleep() else { return 0 }
        }
        let untilTick = nextTickAt > now ? Int32(clamping: (nextTickAt - now + 999_999) / 1_000_000) : 0
        // Paused producers are resumed by a queue draining, which no event announces: look again soon.
        let timeout = min(milliseconds, untilTick, congestedGroups.isEmpty ? .max : 1)
        let events = try loop.poll(timeoutMilliseconds: timeout)
        now = Posix.monotonicNanoseconds()
        return events + loop.flushDirty()
    }

    /// Reads every client's to-broker ring and fills its to-client ring; returns the records and fills done.
    /// Each pass starts one client further on: when a queue passes its mark partway through a pass, the rings
    /// not read yet wait for the next, and no client is always the one left out.
    func serviceRings() -> Int {
        var work = 0
        let count = ringClients.count
        guard count > 0 else { return 0 }
        ringCursor = ringCursor >= count - 1 ? 0 : ringCursor + 1
        for step in 0..<count {
            // A client closed during this pass leaves the array: stop at its new end.
            guard ringClients.count == count else { break }
            let client = ringClients[(ringCursor + step) % count]
            // An empty ring is told by one load of its head: a full drain costs reference counting (perf: a
            // third of a busy broker's cycles went to polling 17 idle rings while it spun).
            if client.hasRingInput { work += drainRing(of: client) }
            if client.hungUp && !client.hasRingInput {
                client.close(reason: "closed by the other side, its ring drained")
                continue
            }
            if !client.output.isEmpty, client.flushToRing() {
                work += 1
                client.scheduleFlush()
            }
        }
        return work
    }

    /// Runs the timers when they are due.
    func runTimers() {
        guard now >= nextTickAt else { return }
        tick()
        nextTickAt = now + UInt64(tickMilliseconds) * 1_000_000
    }
}
