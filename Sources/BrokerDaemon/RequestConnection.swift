// What the admin socket's and the metrics port's connections share: one request read, one answer written
// without blocking the loop (the rest waits for the socket to be writable), then the connection closes.
// Subclasses read and parse their request in `readAvailable` and answer with `respond`.
import BrokerSystem
import BrokerWire

class RequestConnection: LoopHandler {
    let descriptor: OwnedDescriptor
    /// The broker outlives every connection it serves.
    unowned let broker: Broker
    var token: UInt64 = 0
    let input: ByteBuffer
    private let output = ByteBuffer(capacity: 4096)
    /// The answer is queued: what the peer sends now is not read.
    private(set) var answered = false
    private(set) var closed = false
    private var watchingWrites = false

    init(_ descriptor: OwnedDescriptor, broker: Broker, inputCapacity: Int) throws(SystemError) {
        self.descriptor = descriptor
        self.broker = broker
        input = ByteBuffer(capacity: inputCapacity)
        token = try broker.loop.register(descriptor.number, .readable, self)
    }

    final func handleEvents(_ events: EpollEvents) {
        if events.rawValue & EpollEvents.readReadiness.rawValue != 0 {
            if answered { discardInput() } else { readAvailable() }
        }
        if !closed && events.rawValue & EpollEvents.writable.rawValue != 0 { flush() }
    }

    /// After the answer: what the peer still sends is read and dropped (left unread, a level-triggered socket
    /// would wake the loop again at once while the answer waits for room); its end closes the connection.
    private func discardInput() {
        var scratch = [UInt8](repeating: 0, count: 256)
        let result = scratch.withUnsafeMutableBytes { try? Posix.read(descriptor: descriptor.number, into: $0) }
        if result == nil || result == .processed(0) { close() }
    }

    /// Reads the request (subclasses).
    func readAvailable() {}

    /// Reads what the socket has into `input` (up to `limit` bytes in all); false when the connection ended
    /// (closed here) or nothing came.
    final func readInput(limit: Int) -> Bool {
        input.reserve(max(0, limit - input.readableBytes))
        let result: IOResult<Int>
        do { result = try Posix.read(descriptor: descriptor.number, into: input.writable) } catch {
            close()
            return false
        }
        guard case .processed(let count) = result else { return false }
        guard count > 0 else {
            close()
            return false
        }
        input.commit(count)
        return true
    }

    /// Queues the answer and writes what the socket takes; the connection closes once it is all written.
    final func respond(_ bytes: [UInt8]) {
        output.append(bytes)
        answered = true
        flush()
    }

    private func flush() {
        while !output.isEmpty {
            guard case .processed(let count)? = try? Posix.write(descriptor: descriptor.number, from: output.readable) else {
                if !watchingWrites {
                    watchingWrites = true
                    broker.loop.modify(descriptor.number, token: token, .readableAndWritable)
                }
                return
            }
            output.consume(count)
        }
        if answered { close() }
    }

    func close() {
        guard !closed else { return }
        closed = true
        broker.loop.deregister(descriptor.number, token: token)
        descriptor.close()
    }
}
