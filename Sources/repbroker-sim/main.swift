// repbroker-sim: runs the deterministic simulation of whole broker groups (BrokerSim) for one seed or many.
//   repbroker-sim --seed S [--steps N] [--brokers B] [--verbose]     one run, replayed exactly
//   repbroker-sim --seeds K [--first S] [--steps N]                   K runs from seed S on; stops at a failure
#if canImport(Glibc)
import Glibc
#endif
import BrokerCore
import BrokerSim

enum StandardError {
    static func error(_ text: String) {
        let line = text + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }
}

let usage = """
    usage: repbroker-sim --seed S [--steps N] [--brokers 3..7] [--verbose]
           repbroker-sim --seeds K [--first S] [--steps N] [--brokers 3..7]

    Runs 3 to 7 brokers and their clients in one process on virtual time, with faults the seed chooses
    (resets, partitions, stops, crashes and restarts, killed clients, slow receivers, late writers, joins and
    removals), checks the invariants after every step, then heals every fault and checks that the group
    settles. Exits 1 at the first violation and prints the seed that replays it.

      --seed S      one run of seed S (prints its trace hash: the same seed gives the same hash)
      --seeds K     K runs, seeds S, S+1, ... (S from --first, default 1)
      --steps N     steps with faults per run (default 6000; each 0.1 to 1 ms of virtual time)
      --brokers B   brokers at the start (default: the seed picks 3 to 7)
      --faults K,..  only these fault kinds (reset, partition, pause, crash, clientKill, slowReceiver,
                     lateProducer, removal; default: the seed picks)
      --mutation M   put back a fixed defect (lateProducerNotPaused, receiverLossNotAnnounced,
                     dropReportedQueued): the invariants must catch it
      --verbose     every broker's log lines (with --seed)
    """

let arguments = Array(CommandLine.arguments.dropFirst())
func value(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}
if arguments.contains("--help") || arguments.contains("-h") || arguments.isEmpty {
    print(usage)
    exit(arguments.isEmpty ? 64 : 0)
}
let known: Set<String> = ["--seed", "--seeds", "--first", "--steps", "--brokers", "--verbose", "--mutation", "--faults"]
for argument in arguments where argument.hasPrefix("--") && !known.contains(argument) {
    StandardError.error("repbroker-sim: unknown option \(argument)\n\(usage)")
    exit(64)
}
func number(_ name: String) -> UInt64? {
    guard let text = value(name) else { return nil }
    guard let number = UInt64(text) else {
        StandardError.error("repbroker-sim: \(name) takes a number, not '\(text)'")
        exit(64)
    }
    return number
}
let steps = number("--steps").map(Int.init) ?? 6000
let brokers = number("--brokers").map(Int.init)
if let brokers, !(3...7).contains(brokers) {
    StandardError.error("repbroker-sim: --brokers takes 3 to 7, not \(brokers)")
    exit(64)
}

let mutations: Set<CoreMutation> = Set(value("--mutation").map { text in
    text.split(separator: ",").map { name in
        guard let mutation = CoreMutation(rawValue: String(name)) else {
            StandardError.error("repbroker-sim: no mutation '\(name)'; known: \(CoreMutation.allCases.map(\.rawValue).joined(separator: ", "))")
            exit(64)
        }
        return mutation
    }
} ?? [])
let faults: Set<SimFault>? = value("--faults").map { text in
    Set(text.split(separator: ",").map { name in
        guard let fault = SimFault(rawValue: String(name)) else {
            StandardError.error("repbroker-sim: no fault '\(name)'; known: \(SimFault.allCases.map(\.rawValue).joined(separator: ", "))")
            exit(64)
        }
        return fault
    })
}

func options(_ seed: UInt64) -> Simulation.Options {
    var options = Simulation.Options(seed: seed)
    options.steps = steps
    options.brokers = brokers
    if arguments.contains("--verbose") { options.logLevel = .debug }
    options.mutations = mutations
    options.faults = faults
    return options
}

if let seed = number("--seed") {
    let outcome = Simulation(options(seed)).run()
    print(outcome)
    if outcome.violation != nil {
        print("last log lines:\n" + outcome.log.suffix(60).joined())
        exit(1)
    }
} else {
    let count = number("--seeds") ?? 100
    let first = number("--first") ?? 1
    let clock = ContinuousClock()
    let start = clock.now
    for seed in first..<(first + count) {
        let outcome = Simulation(options(seed)).run()
        if outcome.violation != nil {
            print(outcome)
            print("last log lines:\n" + outcome.log.suffix(60).joined())
            exit(1)
        }
    }
    let seconds = Double((clock.now - start).components.seconds) + Double((clock.now - start).components.attoseconds) / 1e18
    print("\(count) seeds from \(first), \(steps) steps each: all invariants held "
        + "(\(Int(seconds * 10) / 10).\(Int(seconds * 10) % 10) s, \(Int(Double(count) / seconds * 60)) seeds a minute)")
}
