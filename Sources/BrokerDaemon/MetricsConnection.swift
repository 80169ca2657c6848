// --metrics-listen: a minimal HTTP/1.1 server on the broker's loop for Prometheus. `GET /metrics` is
// answered with the stats in the text exposition format (BrokerStats.prometheusText), any other path with
// 404, any other method with 405, then the connection closes (RequestConnection). Nothing blocks the loop:
// reads and writes are non-blocking, a request is capped at 8 KiB, at most 32 connections are served at once,
// and one that has not been answered and written within 10 s is closed.
import BrokerCore
import BrokerSystem
import BrokerWire
#if canImport(Glibc)
import Glibc
#endif

final class MetricsConnection: RequestConnection {
    let deadline: UInt64
    static let maxRequest = 8192
    static let maxConnections = 32
    static let timeoutNanoseconds: UInt64 = 10_000_000_000

    init(_ descriptor: OwnedDescriptor, broker: Broker, now: UInt64) throws(SystemError) {
        deadline = now + Self.timeoutNanoseconds
        try super.init(descriptor, broker: broker, inputCapacity: 1024)
    }

    override func readAvailable() {
        guard readInput(limit: Self.maxRequest) else { return }
        let request = input.readable
        guard let end = Self.endOfHeaders(request) else {
            if request.count >= Self.maxRequest { respond(431, "Request Header Fields Too Large", "request over 8 KiB\n") }
            return
        }
        let lineEnd = request[..<end].firstIndex(of: UInt8(ascii: "\r")) ?? end
        let line = String(decoding: UnsafeRawBufferPointer(rebasing: request[..<lineEnd]), as: UTF8.self)
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            return respond(400, "Bad Request", "not an HTTP/1.x request line\n")
        }
        let path = parts[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        switch (parts[0], path) {
        case ("GET", "/metrics"), ("HEAD", "/metrics"):
            respond(200, "OK", broker.stats().prometheusText, headOnly: parts[0] == "HEAD",
                    contentType: "text/plain; version=0.0.4; charset=utf-8")
        case ("GET", _), ("HEAD", _):
            respond(404, "Not Found", "repbrokerd serves /metrics only\n", headOnly: parts[0] == "HEAD")
        default:
            respond(405, "Method Not Allowed", "GET /metrics\n", extraHeaders: "Allow: GET, HEAD\r\n")
        }
    }

    /// The offset of the blank line ending the headers ("\r\n\r\n" or "\n\n"), or nil.
    static func endOfHeaders(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\n") {
                if index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "\n") { return index }
                if index + 2 < bytes.count && bytes[index + 1] == UInt8(ascii: "\r") && bytes[index + 2] == UInt8(ascii: "\n") {
                    return index
                }
            }
            index += 1
        }
        return nil
    }

    private func respond(_ status: Int, _ reason: String, _ body: String, headOnly: Bool = false,
                         contentType: String = "text/plain; charset=utf-8", extraHeaders: String = "") {
        let bodyBytes = Array(body.utf8)
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bodyBytes.count)\r\n"
            + extraHeaders + "Connection: close\r\n\r\n"
        respond(Array(head.utf8) + (headOnly ? [] : bodyBytes))
    }

    override func close() {
        guard !closed else { return }
        super.close()
        broker.metricsConnections.removeAll { $0 === self }
    }
}
