// repbroker-bench: the benchmarks, apart from the operator's tool. Each prints a table (or --json) with its
// baseline measured in the same run. Subcommands: ipc, pingpong, idle, mesh, isolation, soak; and, for the
// processes the benchmarks start, daemon (a broker), bench-worker and soak-worker.
import BrokerDaemon
import BrokerSystem
#if canImport(Glibc)
import Glibc
#endif

signal(SIGPIPE, SIG_IGN)
let words = Array(CommandLine.arguments.dropFirst())
guard let subcommand = words.first, !["--help", "-h", "help"].contains(subcommand) else {
    Console.writeOutput(BenchCommand.help + "\n")
    exit(words.isEmpty ? 64 : 0)
}
switch subcommand {
case "daemon":
    DaemonMain.run(Array(words.dropFirst()))
case "bench-worker", "soak-worker":
    runCommand(words, ["bench-worker": MeshWorker.self, "soak-worker": SoakWorker.self], tool: "repbroker-bench")
default:
    // `repbroker-bench ipc --size 64` is the bench command with its benchmark first.
    runCommand(["bench"] + words, ["bench": BenchCommand.self], tool: "repbroker-bench")
}
