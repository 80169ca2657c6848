// The processes of `repbroker-bench soak` (hidden subcommand `soak-worker`):
//   receive  the site's receiver for group "default": takes every message, for ever;
//   serve    subscribed to channel "soak": answers every request, for ever;
//   churn    a short-lived client: connects (--transport uds|shm), sends --count messages to the sites --to
//            lists (unicast to each in turn, every other one a broadcast), makes --requests channel requests to site --server, and exits;
//            the bench kills some of them with -9 before they are done.
// Each prints `ready` once registered; churn prints `done SENT REPLIES` at its end.
import BrokerDaemon
import BrokerSystem
import Foundation
import RepBrokerClient

enum SoakWorker: Command {
    static let help = "USAGE: repbroker soak-worker receive|serve|churn --socket PATH [--transport uds|shm] "
        + "[--to N,N] [--count N] [--requests N] [--server N] (used by bench soak)"
    static let valuedOptions: Set<String> = ["socket", "transport", "to", "count", "requests", "server"]
    static let flagNames: Set<String> = []

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        guard let socket = arguments.last("socket") else { throw UsageError("--socket is required") }
        let transport = arguments.last("transport") ?? "uds"
        guard ["uds", "shm"].contains(transport) else { throw UsageError("--transport must be uds or shm") }
        func connect(_ roles: ClientRoles, _ name: String) throws -> BrokerClient {
            var options = BrokerClientOptions(socketPath: socket, name: name, roles: roles)
            options.transport = transport == "shm" ? .sharedMemory : .unixSocket
            options.ringBytes = 64 << 10
            options.reconnect = false
            return try BrokerClient(options: options)
        }
        switch arguments.positionals.first {
        case "receive":
            let client = try connect([.receiver], "soak-receiver")
            Console.writeOutput("ready\n")
            while true { _ = try client.receiveAll(timeout: 1) { _ in } }
        case "serve":
            let client = try connect([], "soak-server")
            try client.subscribe(channel: "soak")
            Console.writeOutput("ready\n")
            while true {
                guard let request = try client.receiveChannelMessage(timeout: 1) else { continue }
                try? client.reply(to: request, payload: request.payload)
            }
        case "churn":
            let others = (arguments.last("to") ?? "").split(separator: ",").compactMap { Int32($0) }
            guard !others.isEmpty else { throw UsageError("--to must list at least one site") }
            let count = try arguments.integer("count", Int.self, range: 0...10_000_000) ?? 100
            let requests = try arguments.integer("requests", Int.self, range: 0...100_000) ?? 0
            let server = try arguments.integer("server", Int32.self, range: 1...1000) ?? 1
            let client = try connect([.sender], "soak-churn")
            Console.writeOutput("ready\n")
            var sent = 0
            for index in 0..<count {
                let destination = index % 2 == 0 ? others[index / 2 % others.count] : SiteID.broadcast
                if (try? client.send(control: [1], rec: [UInt8](repeating: 7, count: 100), to: destination)) != nil {
                    sent += 1
                }
            }
            var replies = 0
            for index in 0..<requests {
                let payload = Array("soak-\(index)".utf8)
                if (try? client.request(channel: "soak", to: server, payload: payload, timeout: 2)) == payload {
                    replies += 1
                }
            }
            client.close()
            Console.writeOutput("done \(sent) \(replies)\n")
            return 0
        default:
            throw UsageError("soak-worker needs receive, serve or churn")
        }
    }
}
