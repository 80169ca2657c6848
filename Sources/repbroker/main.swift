// repbroker: the operator's tool. Subcommands: stats, send, recv, request, sites, remove-site, reload-tls,
// demo, daemon.
// The benchmarks are a program of their own (repbroker-bench).
import BrokerDaemon
import BrokerSystem
#if canImport(Glibc)
import Glibc
#endif

let overview = """
    repbroker: operate and try a repbroker site.

    USAGE: repbroker <subcommand> [options]

    SUBCOMMANDS:
      stats   Show a broker's peers, clients and counters (table, --json or --prometheus).
      top     A live view of a broker: peers, groups and clients with their rates, refreshed every second.
      send    Send messages as a local client (one per stdin line, or one MESSAGE).
      recv    Take the receiver role (or subscribe to a channel) and print the messages that arrive.
      request Send a request on an application channel and print the reply.
      sites   List the group's sites as the broker knows them.
      remove-site  Remove a site from the group for good.
      reload-tls   Make the broker read its TLS certificates again (links up keep theirs).
      demo    Start a three-site group on loopback, send traffic, print each broker's stats, clean up.
      daemon  Run a broker in this process: the same program and options as repbrokerd
              ('repbroker daemon --help'). The demo starts its brokers this way.

    The benchmarks are 'repbroker-bench' ('swift run -c release repbroker-bench --help').

    Run 'repbroker <subcommand> --help' for a subcommand's options.
    """

signal(SIGPIPE, SIG_IGN)
var words = Array(CommandLine.arguments.dropFirst())
guard let subcommand = words.first, !["--help", "-h", "help"].contains(subcommand) else {
    Console.writeOutput(overview + "\n")
    exit(words.isEmpty ? 64 : 0)
}
if subcommand == "daemon" { DaemonMain.run(Array(words.dropFirst())) }
runCommand(words, [
    "stats": StatsCommand.self, "top": TopCommand.self, "send": SendCommand.self, "recv": RecvCommand.self, "demo": DemoCommand.self,
    "request": RequestCommand.self, "sites": SitesCommand.self, "remove-site": RemoveSiteCommand.self,
    "reload-tls": ReloadTLSCommand.self,
], tool: "repbroker")
