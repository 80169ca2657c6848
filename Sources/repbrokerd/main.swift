// repbrokerd: the per-host communications broker. The program lives in BrokerDaemon.DaemonMain.
import BrokerDaemon

DaemonMain.run(Array(CommandLine.arguments.dropFirst()))
