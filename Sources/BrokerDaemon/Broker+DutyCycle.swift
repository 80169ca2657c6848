// The broker's loop as a duty cycle. Each pass does the work there is, phase by phase, and says how much:
// backpressure and credit, sockets (epoll without waiting), rings (each client's to-broker ring drained and
// routed, its to-client ring filled from its queue), timers, flush (every connection with new output written
// once). The core decides in each phase; the shell reads the clock, does the I/O and carries out the core's
// actions. A pass that found nothing hands over to the idle strategy (IdleStrategy.swift), which spins,
// yields or parks.
#if canImport(Glibc)
import Glibc
#endif
import BrokerSystem
import BrokerWire
import CRepBrokerIPC

extension Broker {
    /// Runs the loop until `requestStop`, then flushes peers (bounded) and releases everything.
    public func run() throws {
        var idle = IdleStrategy(config.idleStrategy, maxParkMilliseconds: Int32(core.tickNanoseconds / 1_000_000))
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
        if let fatalReason = core.fatalReason { throw BrokerFailure(reason: fatalReason) }
    }

    /// One pass; returns the work done (events, ring records and fills, connections flushed). Timers run on
    /// their schedule and do not count: a broker idle but for its heartbeats keeps parking.
    func doWork() throws(SystemError) -> Int {
        core.now = Posix.monotonicNanoseconds()
        core.applyBackpressure()
        core.returnCredits()
        var work = try loop.poll(timeoutMilliseconds: 0)
        performActions()
        work += drainTLSBacklog()
        work += core.serviceRings()
        core.takeRoomBells { ($0.attachment as? SessionSocket)?.rings?.room.signal() }
        runTimers()
        performActions()
        work += flush()
        return work
    }

    /// Writes every connection with new output once; returns how many.
    func flush() -> Int {
        let flushed = core.takeDirty { ($0.attachment as? SessionSocket)?.flush() }
        performActions()
        return flushed
    }

    /// Sleeps in epoll for up to `milliseconds` (never past the next timer), once every ring said its
    /// consumer sleeps so that a producer rings the loop's eventfd; returns the events handled.
    func park(milliseconds: Int32) throws(SystemError) -> Int {
        guard core.prepareRingsToSleep() else { return 0 }
        // Clients may come and go while parked: every ring there is then is marked awake again.
        defer { core.wakeRings() }
        let now = Posix.monotonicNanoseconds()
        let untilTick = core.nextTickAt > now ? Int32(clamping: (core.nextTickAt - now + 999_999) / 1_000_000) : 0
        // Paused producers are resumed by a queue draining, which no event announces: look again soon.
        let timeout = min(milliseconds, untilTick, core.hasCongestion || !tlsBacklog.isEmpty ? 1 : .max)
        let events = try loop.poll(timeoutMilliseconds: timeout)
        core.now = Posix.monotonicNanoseconds()
        performActions()
        return events + flush()
    }

    /// The core's timers, and the shell's own on the same schedule: the parent's exit, the reserve descriptor,
    /// paused listeners, the resolver's answers, systemd's watchdog and status.
    func runTimers() {
        guard core.now >= core.nextTickAt else { return }
        if config.exitWithParent && getppid() != parentPID {
            logger.warning("the process that started this broker exited: stopping")
            requestStop()
        }
        dialer.takeAnswers(now: core.now, broker: self)
        if stopper.takeTLSReloadRequest() {
            if peerTLS == nil { logger.warning("SIGHUP: this broker has no TLS configured; nothing to reload") }
            else { try? reloadTLS() }
        }
        _ = holdReserveDescriptor()
        for listener in listeners { listener.resumeIfDue(now: core.now) }
        for connection in metricsConnections where core.now >= connection.deadline { connection.close() }
        core.runTimers()
        if notifier.isActive {
            let summary = core.linkSummary
            notifier.tick(peersUp: summary.peersUp, peersKnown: summary.peersKnown, clients: summary.clients, now: core.now)
        }
    }

    func shutDown() throws {
        notifier.stopping()
        logger.info("stopping: no new connections, flushing peers for up to \(config.shutdownFlushMilliseconds) ms")
        for listener in listeners { listener.close() }
        listeners.removeAll()
        removeSocketFiles()
        let deadline = Posix.monotonicNanoseconds() + UInt64(config.shutdownFlushMilliseconds) * 1_000_000
        while core.queuedForConnectedPeers > 0, Posix.monotonicNanoseconds() < deadline {
            _ = try loop.poll(timeoutMilliseconds: 10)
            core.now = Posix.monotonicNanoseconds()
            performActions()
            core.returnCredits()
            _ = flush()
        }
        let (queued, unacknowledged) = core.queuedForPeers
        if queued > 0 {
            // Frames sent and not yet acknowledged are kept too: the peer may not have them.
            logger.warning("stopped with frames for peers not acknowledged", [
                "queued_bytes": "\(queued)", "of_which_sent_bytes": "\(unacknowledged)"])
        }
        core.closeAll(reason: "broker stopping")
        performActions()
        dialer.stop()
        _ = releaseReserveDescriptor()
        logger.info("stopped")
    }
}
