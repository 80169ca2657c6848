// repbroker recv: takes the receiver role (or stands by for it) and prints each message.
import BrokerDaemon
import BrokerSystem
import BrokerWire
import Foundation
import RepBrokerClient

enum RecvCommand: Command {
    static let help = """
        USAGE: repbroker recv [--socket PATH] [--group NAME] [--count N] [--timeout SECONDS] [--json] [--name NAME]

        Takes the group's receiver role (when another client holds it, stands by and takes over when that
        one goes) and prints one line per message: `from=<site> <rec as text>`, or with --json one JSON object
        per line: {"from":site,"control":base64,"rec":base64,"lsn":[file,offset],"flags":[...]}. With --json, peer
        site events are printed too: {"event":"site_up","site":2} or {"event":"site_down","site":2} (the current
        state of every peer first, then each change); --count counts messages only.

        OPTIONS:
          --socket PATH      The broker's local socket (default: \(BrokerConfig.defaultSocketPath)).
          --group NAME       Replication group (default: default).
          --count N          Exit 0 after N messages (default: run until interrupted).
          --timeout SECONDS  Exit 1 when no message arrives for SECONDS (default: wait for ever).
          --json             JSON lines, bytes in base64.
          --channel NAME     Subscribe to this application channel instead of taking the receiver role; prints
                             `from=<site> <payload>` per message and answers each request with its own payload.
          --name NAME        Name shown in stats (default: repbroker-recv).
        """ + transportHelp
    static let valuedOptions: Set<String> = ["channel", "transport", "ring-bytes", "socket", "group", "count", "timeout", "name"]
    static let flagNames: Set<String> = ["json"]

    struct Line: Encodable {
        let from: Int32
        let control: String
        let rec: String
        let lsn: [UInt32]
        let flags: [String]
    }

    static func receiveChannel(_ channel: String, _ arguments: ParsedArguments, count: Int?, timeout: Double?) throws -> Int32 {
        var options = BrokerClientOptions(socketPath: arguments.last("socket") ?? BrokerConfig.defaultSocketPath,
                                          group: arguments.last("group") ?? Wire.defaultGroup,
                                          name: arguments.last("name") ?? "repbroker-recv-\(channel)", roles: [.sender])
        try applyTransport(arguments, to: &options)
        let client = try BrokerClient(options: options)
        defer { client.close() }
        try client.subscribe(channel: channel)
        var received = 0
        while count.map({ received < $0 }) ?? true {
            guard let message = try client.receiveChannelMessage(timeout: timeout) else {
                Console.writeError("repbroker recv: no message for \(timeout ?? 0) s after \(received) messages\n")
                return 1
            }
            received += 1
            Console.writeOutput("from=\(message.source) \(String(decoding: message.payload, as: UTF8.self))\n")
            if message.isRequest { try client.reply(to: message, payload: message.payload) }
        }
        return 0
    }

    struct EventLine: Encodable {
        let event: String
        let site: Int32
    }

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let count = try arguments.integer("count", Int.self, range: 1...Int.max)
        let timeout = try arguments.seconds("timeout")
        let json = arguments.has("json")
        if let channel = arguments.last("channel") { return try receiveChannel(channel, arguments, count: count, timeout: timeout) }
        var options = BrokerClientOptions(socketPath: arguments.last("socket") ?? BrokerConfig.defaultSocketPath,
                                          group: arguments.last("group") ?? Wire.defaultGroup,
                                          name: arguments.last("name") ?? "repbroker-recv", roles: [.receiver])
        try applyTransport(arguments, to: &options)
        let client = try BrokerClient(options: options)
        defer { client.close() }
        var received = 0
        while count.map({ received < $0 }) ?? true {
            guard let event = try client.nextEvent(timeout: timeout) else {
                Console.writeError("repbroker recv: no message for \(timeout ?? 0) s after \(received) messages\n")
                return 1
            }
            let message: ReceivedMessage
            switch event {
            case .message(let m):
                message = m
            case .siteUp(let site), .siteDown(let site):
                if json {
                    let name = event == .siteUp(site) ? "site_up" : "site_down"
                    Console.writeOutput(try jsonLine(EventLine(event: name, site: site)) + "\n")
                }
                continue
            }
            received += 1
            if json {
                let line = Line(from: message.source, control: Data(message.control).base64EncodedString(),
                                rec: Data(message.rec).base64EncodedString(),
                                lsn: [message.lsn.file, message.lsn.offset], flags: message.flags.names)
                Console.writeOutput(try jsonLine(line) + "\n")
            } else {
                Console.writeOutput("from=\(message.source) \(String(decoding: message.rec, as: UTF8.self))\n")
            }
        }
        return 0
    }
}
