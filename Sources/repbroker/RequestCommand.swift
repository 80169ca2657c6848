// repbroker request: one request on an application channel; prints the reply.
import BrokerDaemon
import BrokerSystem
import BrokerWire
import RepBrokerClient

enum RequestCommand: Command {
    static let help = """
        USAGE: repbroker request [--socket PATH] [--group NAME] --channel NAME --to SITE|master [--timeout SECONDS]
                                 PAYLOAD

        Sends PAYLOAD as a request on the channel to one subscriber at SITE (master: the site last announced as
        the group's master) and prints the reply. Exit 1 with the reason when there is no subscriber, no master,
        or no reply within the timeout (default 5 s).
        """
    static let valuedOptions: Set<String> = ["socket", "group", "channel", "to", "timeout"]
    static let flagNames: Set<String> = []

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        guard let channel = arguments.last("channel") else { throw UsageError("--channel is required") }
        let destination = try parseDestination(arguments.last("to"))
        guard destination != SiteID.broadcast else { throw UsageError("a request goes to one site, not all") }
        guard arguments.positionals.count == 1, let payload = arguments.positionals.first else {
            throw UsageError("give the request's PAYLOAD")
        }
        var options = BrokerClientOptions(socketPath: arguments.last("socket") ?? BrokerConfig.defaultSocketPath,
                                          group: arguments.last("group") ?? Wire.defaultGroup, name: "repbroker-request")
        options.reconnect = false
        let client = try BrokerClient(options: options)
        defer { client.close() }
        let reply = try client.request(channel: channel, to: destination, payload: Array(payload.utf8),
                                       timeout: try arguments.seconds("timeout") ?? 5)
        Console.writeOutput(String(decoding: reply, as: UTF8.self) + "\n")
        return 0
    }
}
