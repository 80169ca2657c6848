// bdb-scenario: the Berkeley DB failover scenario through repbroker (see BerkeleyDBScenario/Scenario.swift).
import BerkeleyDBScenario
import Foundation

let usage = "USAGE: bdb-scenario [--sites 3] [--writers 2] [--txns 500] [--ack-policy none|one|quorum|all] [--value-size BYTES]"
var options = ScenarioOptions()
var words = Array(CommandLine.arguments.dropFirst())
while !words.isEmpty {
    let name = words.removeFirst()
    if name == "--help" || name == "-h" {
        print(usage)
        exit(0)
    }
    guard !words.isEmpty else {
        FileHandle.standardError.write(Data("bdb-scenario: \(name) needs a value\n\(usage)\n".utf8))
        exit(64)
    }
    let value = words.removeFirst()
    switch (name, Int(value)) {
    case ("--sites", let n?) where n >= 3: options.sites = n
    case ("--writers", let n?) where n >= 1: options.writers = n
    case ("--txns", let n?) where n >= 1: options.txns = n
    case ("--value-size", let n?) where n >= 16: options.valueSize = n
    case ("--ack-policy", _) where ["none", "one", "quorum", "all"].contains(value): options.ackPolicy = value
    default:
        FileHandle.standardError.write(Data("bdb-scenario: bad option \(name) \(value)\n\(usage)\n".utf8))
        exit(64)
    }
}
do {
    let result = try Scenario(options: options) { print("bdb-scenario: \($0)") }.run()
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    print(String(decoding: try encoder.encode(result), as: UTF8.self))
    exit(0)
} catch {
    print("bdb-scenario: FAILED: \(error)")
    exit(1)
}
