// Writes issued at any site, committed at the master (FAQ Q1): `bdb-site put` sends a request on channel
// "writes" to the master's site; a `serve-writes` process at every site commits it there (only while its
// site is master) and replies after the commit. A master change between request and reply is a clear,
// retryable error, never a silent loss.
import CBerkeleyDB
import Foundation
import RepBrokerClient

public enum PutOutcome: Error, CustomStringConvertible {
    case retry(String)
    public var description: String {
        switch self {
        case .retry(let why): return "not committed, retry: \(why)"
        }
    }
}

/// A put's request payload: key, a zero byte, value.
func encodePut(key: String, value: String) -> [UInt8] { Array(key.utf8) + [0] + Array(value.utf8) }

func decodePut(_ payload: [UInt8]) -> (key: [UInt8], value: [UInt8])? {
    guard let zero = payload.firstIndex(of: 0), zero > 0 else { return nil }
    return (Array(payload[..<zero]), Array(payload[(zero + 1)...]))
}

/// Forwards one put to the master and waits until it is committed there.
public func forwardPut(socketPath: String, key: String, value: String, timeout: Double) throws {
    var options = BrokerClientOptions(socketPath: socketPath, name: "bdb-put")
    options.reconnect = false
    let client = try BrokerClient(options: options)
    defer { client.close() }
    let reply: [UInt8]
    do {
        reply = try client.request(channel: "writes", to: SiteID.master, payload: encodePut(key: key, value: value),
                                   timeout: timeout)
    } catch BrokerClientError.noMaster {
        throw PutOutcome.retry("no master is known for the group")
    } catch BrokerClientError.noSubscriber {
        throw PutOutcome.retry("no serve-writes process at the master's site")
    } catch BrokerClientError.timedOut {
        throw PutOutcome.retry("no answer in \(timeout) s (the master may have changed)")
    }
    let text = String(decoding: reply, as: UTF8.self)
    guard text == "ok" else { throw PutOutcome.retry(text) }
}

/// Serves forwarded writes at this site until killed: commits each while the site is master.
public func serveWrites(home: String, socketPath: String, ackPolicy: AckPolicy) throws -> Never {
    var options = BrokerClientOptions(socketPath: socketPath, name: "bdb-serve-writes", roles: [.sender])
    options.ackPolicy = ackPolicy
    let client = try BrokerClient(options: options)
    let transport = SiteTransport(client: client, siteID: client.siteID)
    let environment = try joinEnvironment(home, transport: transport)
    try client.subscribe(channel: "writes")
    say("serving writes site=\(client.siteID)")
    var database: Database?
    while true {
        guard let request = try client.receiveChannelMessage(timeout: 1), request.isRequest else { continue }
        guard let (key, value) = decodePut(request.payload) else {
            try? client.reply(to: request, payload: Array("error: malformed put".utf8))
            continue
        }
        guard (try? environment.replicationRole()) == UInt32(DB_REP_MASTER) else {
            try? client.reply(to: request, payload: Array("error: site \(client.siteID) is no longer master".utf8))
            continue
        }
        do {
            if database == nil { database = try openForWriting(environment) }
            let failures = transport.permanentFailures
            try database?.putCommitted(key: key, value: value)
            let acked = transport.permanentFailures == failures
            try? client.reply(to: request, payload: Array((acked ? "ok" : "error: committed but not acknowledged").utf8))
        } catch {
            try? client.reply(to: request, payload: Array("error: \(error)".utf8))
        }
    }
}
