// The shape every subcommand has: its help, its options, and a run that returns the exit code.
import BrokerDaemon
import Foundation
import RepBrokerClient

protocol Command {
    static var help: String { get }
    static var valuedOptions: Set<String> { get }
    static var flagNames: Set<String> { get }
    static func run(_ arguments: ParsedArguments) throws -> Int32
}

/// Parses --to: a site id or "all" (broadcast).
func parseDestination(_ text: String?) throws(UsageError) -> Int32 {
    guard let text else { throw UsageError("--to is required: a site id or 'all'") }
    if text == "all" || text == "broadcast" { return SiteID.broadcast }
    guard let site = Int32(text), site > 0 else { throw UsageError("--to takes a positive site id or 'all', not '\(text)'") }
    return site
}

/// Encodes a value as one line of JSON (sorted keys).
func jsonLine<T: Encodable>(_ value: T, pretty: Bool = false) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
