// A small argument reader in the shape of swift-argument-parser: --kebab-case options, --name=value or
// --name value, repeatable options, flags, positionals; usage errors exit 64.
#if canImport(Glibc)
import Foundation
import Glibc
#endif
import BrokerSystem

/// A usage error: printed with the command's help hint, exit code 64.
public struct UsageError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Parsed command-line words: options by name (in order), flags, and positionals.
public struct ParsedArguments {
    public private(set) var options: [String: [String]] = [:]
    public private(set) var flags: Set<String> = []
    public private(set) var positionals: [String] = []

    /// Parses `words`; `valued` names the options that take a value, `flagNames` those that do not.
    public init(_ words: [String], valued: Set<String>, flagNames: Set<String>) throws(UsageError) {
        var index = 0
        while index < words.count {
            let word = words[index]
            index += 1
            guard word.hasPrefix("--"), word.count > 2 else {
                positionals.append(word)
                continue
            }
            var name = String(word.dropFirst(2))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if flagNames.contains(name) {
                guard value == nil else { throw UsageError("--\(name) takes no value") }
                flags.insert(name)
            } else if valued.contains(name) {
                if value == nil {
                    guard index < words.count else { throw UsageError("--\(name) needs a value") }
                    value = words[index]
                    index += 1
                }
                options[name, default: []].append(value ?? "")
            } else {
                throw UsageError("unknown option --\(name)")
            }
        }
    }

    public func last(_ name: String) -> String? { options[name]?.last }
    public func all(_ name: String) -> [String] { options[name] ?? [] }
    public func has(_ name: String) -> Bool { flags.contains(name) }

    public func integer<T: FixedWidthInteger>(_ name: String, _: T.Type = T.self, range: ClosedRange<T>? = nil)
        throws(UsageError) -> T? {
        guard let text = last(name) else { return nil }
        guard let value = T(text) else { throw UsageError("--\(name) needs an integer, not '\(text)'") }
        if let range, !range.contains(value) {
            throw UsageError("--\(name) must be in \(range.lowerBound)...\(range.upperBound), not \(value)")
        }
        return value
    }

    public func seconds(_ name: String) throws(UsageError) -> Double? {
        guard let text = last(name) else { return nil }
        guard let value = Double(text), value >= 0, value.isFinite else {
            throw UsageError("--\(name) needs a non-negative number of seconds, not '\(text)'")
        }
        return value
    }
}

/// Prints to stderr and exits: 64 for usage errors, 1 for failures.
public func exitWithUsage(_ error: UsageError, tool: String) -> Never {
    Console.writeError("\(tool): \(error.message)\nRun '\(tool) --help' for usage.\n")
    exit(64)
}

public func exitWithFailure(_ message: String, tool: String) -> Never {
    Console.writeError("\(tool): \(message)\n")
    exit(1)
}

/// The shape every subcommand of `repbroker` and `repbroker-bench` has: its help, its options, and a run that
/// returns the exit code.
public protocol Command {
    static var help: String { get }
    static var valuedOptions: Set<String> { get }
    static var flagNames: Set<String> { get }
    static func run(_ arguments: ParsedArguments) throws -> Int32
}

/// Runs the subcommand `words` names from `commands` (its --help, usage errors and failures handled).
public func runCommand(_ words: [String], _ commands: [String: Command.Type], tool: String) -> Never {
    var words = words
    let subcommand = words.removeFirst()
    guard let command = commands[subcommand] else {
        exitWithUsage(UsageError("unknown subcommand '\(subcommand)'"), tool: tool)
    }
    if words.contains("--help") || words.contains("-h") {
        Console.writeOutput(command.help + "\n")
        exit(0)
    }
    do {
        let arguments = try ParsedArguments(words, valued: command.valuedOptions, flagNames: command.flagNames)
        exit(try command.run(arguments))
    } catch let error as UsageError {
        exitWithUsage(error, tool: "\(tool) \(subcommand)")
    } catch {
        exitWithFailure("\(error)", tool: "\(tool) \(subcommand)")
    }
}

/// Encodes a value as one line of JSON (sorted keys).
public func jsonLine<T: Encodable>(_ value: T, pretty: Bool = false) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
