// The admin socket speaks lines of text: a request ("stats", "sites", "remove-site ID", "reload-tls") answered with one JSON
// document and a newline, after which the broker closes the connection. Requests are capped at 1 KiB.
import BrokerCore
import BrokerSystem
import BrokerWire
import Foundation

final class AdminConnection: LoopHandler {
    let descriptor: OwnedDescriptor
    /// The broker outlives every connection it serves.
    unowned let broker: Broker
    var token: UInt64 = 0
    private let input = ByteBuffer(capacity: 2048)
    private let output = ByteBuffer(capacity: 4096)
    private var answered = false
    private var closed = false
    private var watchingWrites = false
    static let maxRequest = 1024

    init(_ descriptor: OwnedDescriptor, broker: Broker) throws(SystemError) {
        self.descriptor = descriptor
        self.broker = broker
        token = try broker.loop.register(descriptor.number, .readable, self)
    }

    func handleEvents(_ events: EpollEvents) {
        if events.rawValue & EpollEvents.readReadiness.rawValue != 0 { readAvailable() }
        if !closed && events.rawValue & EpollEvents.writable.rawValue != 0 { flush() }
    }

    private func readAvailable() {
        guard !answered else {
            // Anything after the request is ignored; EOF closes.
            var scratch = [UInt8](repeating: 0, count: 256)
            let result = scratch.withUnsafeMutableBytes { try? Posix.read(descriptor: descriptor.number, into: $0) }
            if case .processed(0)? = result { close() }
            if result == nil { close() }
            return
        }
        input.reserve(Self.maxRequest)
        let result: IOResult<Int>
        do { result = try Posix.read(descriptor: descriptor.number, into: input.writable) } catch { return close() }
        guard case .processed(let count) = result else { return }
        guard count > 0 else { return close() }
        input.commit(count)
        guard let newline = input.readable.firstIndex(of: UInt8(ascii: "\n")) else {
            if input.readableBytes >= Self.maxRequest { respond(error: "request longer than \(Self.maxRequest) bytes") }
            return
        }
        let request = String(decoding: UnsafeRawBufferPointer(rebasing: input.readable[..<newline]), as: UTF8.self)
        handle(request.trimmingCharacters(in: .whitespaces))
    }

    private func handle(_ request: String) {
        switch request {
        case "stats":
            answer(broker.stats())
        case "sites":
            answer(broker.core.sites())
        case "reload-tls":
            do { try broker.reloadTLS() } catch { return respond(error: "\(error)") }
            struct Reloaded: Encodable { let reloaded: String }
            answer(Reloaded(reloaded: broker.peerTLS?.settings.certificate ?? ""))
        case let removal where removal.hasPrefix("remove-site "):
            guard let site = Int32(removal.dropFirst("remove-site ".count)), site > 0 else {
                return respond(error: "remove-site takes a positive site id")
            }
            guard broker.core.removeSite(site) else { return respond(error: "site \(site) is not a member") }
            broker.performActions()
            struct Removed: Encodable { let removed: Int32 }
            answer(Removed(removed: site))
        default:
            respond(error: "unknown request '\(request)'; known: stats, sites, remove-site ID, reload-tls")
        }
    }

    private func answer<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard var data = try? encoder.encode(value) else { return respond(error: "cannot encode the answer") }
        data.append(UInt8(ascii: "\n"))
        data.withUnsafeBytes { output.append($0) }
        answered = true
        flush()
    }

    private func respond(error: String) {
        let escaped = error.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        output.append(Array("{\"error\":\"\(escaped)\"}\n".utf8))
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

    private func close() {
        guard !closed else { return }
        closed = true
        broker.loop.deregister(descriptor.number, token: token)
        descriptor.close()
    }
}
