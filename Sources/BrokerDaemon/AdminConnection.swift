// The admin socket speaks lines of text: a request ("stats", "sites", "remove-site ID", "reload-tls") answered with one JSON
// document and a newline, after which the broker closes the connection. Requests are capped at 1 KiB.
import BrokerCore
import BrokerSystem
import BrokerWire
import Foundation

final class AdminConnection: RequestConnection {
    static let maxRequest = 1024

    init(_ descriptor: OwnedDescriptor, broker: Broker) throws(SystemError) {
        try super.init(descriptor, broker: broker, inputCapacity: 2048)
    }

    override func readAvailable() {
        guard readInput(limit: Self.maxRequest) else { return }
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
        respond(Array(data))
    }

    private func respond(error: String) {
        let escaped = error.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        respond(Array("{\"error\":\"\(escaped)\"}\n".utf8))
    }
}
