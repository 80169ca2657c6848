// repbroker send: a sender client. One message per stdin line, or the one MESSAGE argument.
import BrokerDaemon
import BrokerSystem
import BrokerWire
import RepBrokerClient
#if canImport(Glibc)
import Glibc
#endif

enum SendCommand: Command {
    static let help = """
        USAGE: repbroker send [--socket PATH] [--group NAME] --to SITE|all [--flags LIST] [--control TEXT]
                              [--name NAME] [MESSAGE]

        Sends MESSAGE as the rec of one message; without it, one message per line of standard input.
        Exits 0 when every message was handed to the broker, 1 on the first failure.

        OPTIONS:
          --socket PATH   The broker's local socket (default: \(BrokerConfig.defaultSocketPath)).
          --group NAME    Replication group (default: default).
          --to SITE|all|master
                          A site id; all: every other site of the group (Berkeley DB's broadcast); master:
                          the site last announced as the group's master.
          --channel NAME  Send application messages on this channel instead of replication messages: each
                          goes to one subscriber at the destination site and fails with noSubscriber when
                          there is none.
          --flags LIST    Comma-separated: permanent, nobuffer, anywhere, rerequest. A permanent send
                          waits for the broker to accept it and fails when a peer queue is full.
          --control TEXT  The control bytes of every message (default: empty).
          --name NAME     Name shown in stats (default: repbroker-send).
        """ + transportHelp
    static let valuedOptions: Set<String> = ["channel", "transport", "ring-bytes", "socket", "group", "to", "flags", "control", "name"]
    static let flagNames: Set<String> = []

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let destination = try parseDestination(arguments.last("to"))
        var flags: RepFlags = []
        if let text = arguments.last("flags") {
            switch RepFlags.parse(text) {
            case .success(let parsed): flags = parsed
            case .failure(let error): throw UsageError("--flags: \(error)")
            }
        }
        guard arguments.positionals.count <= 1 else { throw UsageError("give at most one MESSAGE") }
        var options = BrokerClientOptions(socketPath: arguments.last("socket") ?? BrokerConfig.defaultSocketPath,
                                          group: arguments.last("group") ?? Wire.defaultGroup,
                                          name: arguments.last("name") ?? "repbroker-send", roles: [.sender])
        options.reconnect = false
        try applyTransport(arguments, to: &options)
        let client = try BrokerClient(options: options)
        defer { client.close() }
        if let channel = arguments.last("channel") {
            guard destination != SiteID.broadcast else { throw UsageError("a channel message goes to one site, not all") }
            if let message = arguments.positionals.first {
                try client.send(channel: channel, to: destination, payload: Array(message.utf8))
                return 0
            }
            while let line = readLine(strippingNewline: true) {
                try client.send(channel: channel, to: destination, payload: Array(line.utf8))
            }
            return 0
        }
        let control = Array((arguments.last("control") ?? "").utf8)
        if let message = arguments.positionals.first {
            try client.send(control: control, rec: Array(message.utf8), to: destination, flags: flags)
            return 0
        }
        while let line = readLine(strippingNewline: true) {
            try client.send(control: control, rec: Array(line.utf8), to: destination, flags: flags)
        }
        return 0
    }
}
