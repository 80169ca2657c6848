// repbroker: the ops CLI. Subcommands: stats, send, recv, request, sites, remove-site, demo, bench, daemon.
import BrokerDaemon
import BrokerSystem
#if canImport(Glibc)
import Glibc
#endif

let overview = """
    repbroker: operate and try a repbroker site.

    USAGE: repbroker <subcommand> [options]

    SUBCOMMANDS:
      stats   Show a broker's peers, clients and counters (table or --json).
      send    Send messages as a local client (one per stdin line, or one MESSAGE).
      recv    Take the receiver role (or subscribe to a channel) and print the messages that arrive.
      request Send a request on an application channel and print the reply.
      sites   List the group's sites as the broker knows them.
      remove-site  Remove a site from the group for good.
      demo    Start a three-site group on loopback, send traffic, print each broker's stats, clean up.
      bench   Benchmarks (ipc: socket against shared-memory rings); build with -c release.
      daemon  Run a broker in this process: the same program and options as repbrokerd
              ('repbroker daemon --help'). The demo and benchmarks start their brokers this way.

    Run 'repbroker <subcommand> --help' for a subcommand's options.
    """

signal(SIGPIPE, SIG_IGN)
var words = Array(CommandLine.arguments.dropFirst())
guard let subcommand = words.first, !["--help", "-h", "help"].contains(subcommand) else {
    Console.writeOutput(overview + "\n")
    exit(words.isEmpty ? 64 : 0)
}
words.removeFirst()
if subcommand == "daemon" { DaemonMain.run(words) }

let commands: [String: Command.Type] = [
    "stats": StatsCommand.self, "send": SendCommand.self, "recv": RecvCommand.self, "demo": DemoCommand.self, "bench": BenchCommand.self, "bench-worker": MeshWorker.self, "soak-worker": SoakWorker.self, "request": RequestCommand.self, "sites": SitesCommand.self, "remove-site": RemoveSiteCommand.self,
]
guard let command = commands[subcommand] else {
    exitWithUsage(UsageError("unknown subcommand '\(subcommand)'"), tool: "repbroker")
}
if words.contains("--help") || words.contains("-h") {
    Console.writeOutput(command.help + "\n")
    exit(0)
}
do {
    let arguments = try ParsedArguments(words, valued: command.valuedOptions, flagNames: command.flagNames)
    exit(try command.run(arguments))
} catch let error as UsageError {
    exitWithUsage(error, tool: "repbroker \(subcommand)")
} catch {
    exitWithFailure("\(error)", tool: "repbroker \(subcommand)")
}
