// The broker's sockets: level-triggered epoll, and an eventfd for wake-ups from other threads (and the rings'
// producers). Which connections to write at the end of a pass is the core's list (`Core.takeDirty`).
import BrokerSystem

/// Something registered with the event loop.
protocol LoopHandler: AnyObject {
    func handleEvents(_ events: EpollEvents)
}

final class EventLoop {
    let epoll: Epoll
    let wakeup: EventFd
    private var handlers: [UInt64: LoopHandler] = [:]
    private var nextToken: UInt64 = 1
    /// Bytes a pass may still read before every connection is read once per event only (SessionSocket.readAvailable):
    /// a pass stays short, so timers (heartbeats) and the flush (CREDIT) come round often however busy the links.
    var readBudget = 0
    static let readBudgetPerPass = 1 << 20
    private static let wakeupToken: UInt64 = 0

    init() throws(SystemError) {
        epoll = try Epoll()
        wakeup = try EventFd()
        try epoll.add(descriptor: wakeup.descriptor, events: .readable, token: Self.wakeupToken)
    }

    /// Registers `fd` and returns its token.
    func register(_ fd: CInt, _ events: EpollEvents, _ handler: LoopHandler) throws(SystemError) -> UInt64 {
        let token = nextToken
        nextToken += 1
        try epoll.add(descriptor: fd, events: events, token: token)
        handlers[token] = handler
        return token
    }

    func modify(_ fd: CInt, token: UInt64, _ events: EpollEvents) {
        do { try epoll.modify(descriptor: fd, events: events, token: token) } catch {
            // The descriptor is being torn down; its handler sees the error on its next read.
        }
    }

    /// Takes `fd` out of epoll and keeps its handler (a hung-up client whose ring is still drained).
    func stopWatching(_ fd: CInt) {
        epoll.remove(descriptor: fd)
    }

    func deregister(_ fd: CInt, token: UInt64) {
        epoll.remove(descriptor: fd)
        handlers[token] = nil
    }

    /// Waits up to `timeoutMilliseconds` (0: not at all) and dispatches the events that came. Returns how
    /// many came (a wake-up through the eventfd counts).
    func poll(timeoutMilliseconds: Int32) throws(SystemError) -> Int {
        readBudget = Self.readBudgetPerPass
        var events = 0
        try epoll.wait(timeoutMilliseconds: timeoutMilliseconds) { token, ready in
            events += 1
            if token == Self.wakeupToken {
                wakeup.drain()
                return
            }
            handlers[token]?.handleEvents(ready)
        }
        return events
    }

    /// Wakes a waiting turn; safe from any thread.
    func wake() { wakeup.signal() }
}
