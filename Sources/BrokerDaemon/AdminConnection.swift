// The admin socket speaks lines of text: a request ("stats") answered with one JSON document and a
// newline, after which the broker closes the connection. Requests are capped at 1 KiB.
import BrokerSystem
import BrokerWire
import Foundation

final class AdminConnection: Connection {
    /// The broker outlives every connection it serves.
    unowned let broker: Broker
    let output = ByteBuffer(capacity: 4096)
    private var answered = false
    static let maxRequest = 1024

    init(descriptor: CInt, broker: Broker) {
        self.broker = broker
        super.init(descriptor: descriptor, loop: broker.loop, maxMessage: 0, inputCapacity: 2048)
    }

    override func readAvailable() {
        guard !answered else {
            // Anything after the request is ignored; EOF closes.
            var scratch = [UInt8](repeating: 0, count: 256)
            let result = scratch.withUnsafeMutableBytes { try? Posix.read(descriptor: descriptor, into: $0) }
            if case .processed(0)? = result { close(reason: "admin client closed") }
            if result == nil { close(reason: "admin read failed") }
            return
        }
        input.reserve(Self.maxRequest)
        let result: IOResult<Int>
        do { result = try Posix.read(descriptor: descriptor, into: input.writable) } catch {
            return close(reason: "admin read failed: \(error)")
        }
        guard case .processed(let count) = result else { return }
        guard count > 0 else { return close(reason: "admin client closed before a request") }
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
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            do {
                var data = try encoder.encode(broker.stats())
                data.append(UInt8(ascii: "\n"))
                data.withUnsafeBytes { output.append($0) }
                answered = true
                scheduleFlush()
            } catch {
                respond(error: "cannot encode stats: \(error)")
            }
        case "sites":
            struct Site: Encodable { let site_id: Int32; let address: String; let origin: String; let state: String }
            var sites = broker.linkList.filter { !$0.removed }.map {
                Site(site_id: $0.siteID, address: $0.address?.text ?? "-", origin: $0.origin.rawValue, state: $0.state.rawValue)
            }
            sites.append(Site(site_id: broker.config.siteID, address: broker.config.listen ?? "-", origin: "self", state: "self"))
            answer(sites.sorted { $0.site_id < $1.site_id })
        case let removal where removal.hasPrefix("remove-site "):
            guard let site = Int32(removal.dropFirst("remove-site ".count)), site > 0 else {
                return respond(error: "remove-site takes a positive site id")
            }
            guard broker.removeSite(site, from: nil) else { return respond(error: "site \(site) is not a member") }
            struct Removed: Encodable { let removed: Int32 }
            answer(Removed(removed: site))
        default:
            respond(error: "unknown request '\(request)'; known: stats, sites, remove-site ID")
        }
    }

    private func answer<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard var data = try? encoder.encode(value) else { return respond(error: "cannot encode the answer") }
        data.append(UInt8(ascii: "\n"))
        data.withUnsafeBytes { output.append($0) }
        answered = true
        scheduleFlush()
    }

    private func respond(error: String) {
        let escaped = error.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        output.append(Array("{\"error\":\"\(escaped)\"}\n".utf8))
        answered = true
        scheduleFlush()
    }

    override func pendingOutput() -> UnsafeRawBufferPointer { output.readable }

    override func didWrite(_ count: Int) {
        output.consume(count)
        if output.isEmpty && answered { close(reason: "answered") }
    }
}
