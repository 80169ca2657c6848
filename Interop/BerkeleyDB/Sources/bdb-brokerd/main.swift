// The broker for the interop package's scenario and tests: repbrokerd, built in this package.
import BrokerDaemon

DaemonMain.run(Array(CommandLine.arguments.dropFirst()))
