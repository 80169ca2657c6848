// Helpers for tests with real processes: `repbroker send` / `recv` children, parsed receiver output,
// and a group of brokers that is always shut down.
import BrokerDaemon
import BrokerSystem
import BrokerHarness
import Foundation
import RepBrokerClient
import Testing

/// Starts `count` brokers (each with `extraArguments` and its own `siteArguments`), runs `body`, and always
/// stops them and removes their files.
func withSites<R>(_ count: Int, extraArguments: [String] = ["--heartbeat-ms", "200"],
                  siteArguments: (Int32) -> [String] = { _ in [] }, _ body: (LocalSites) throws -> R) throws -> R {
    let sites = try LocalSites(count: count, extraArguments: extraArguments)
    for broker in sites.brokers { broker.extraArguments += siteArguments(broker.siteID) }
    defer { sites.shutDown() }
    do {
        try sites.start()
        return try body(sites)
    } catch {
        for broker in sites.brokers { print("---- log of site \(broker.siteID):\n\(broker.log.suffix(3000))") }
        throw error
    }
}

/// A `repbroker recv` process on a broker.
func startReceiver(_ broker: BrokerProcess, count: Int? = nil, timeout: Double = 30, name: String = "recv",
                   group: String? = nil, transport: String = "auto") throws -> ChildProcess {
    var arguments = ["recv", "--socket", broker.socketPath, "--timeout", "\(timeout)", "--name", name,
                     "--transport", transport]
    if let count { arguments += ["--count", "\(count)"] }
    if let group { arguments += ["--group", group] }
    return try ChildProcess(name: name, executable: Executables.path("repbroker"), arguments: arguments,
                            stderrPath: broker.directory + "/\(name).err")
}

/// A `repbroker send` process that sends `lines` (one message each) and exits.
func runSender(_ broker: BrokerProcess, to destination: String, lines: [String], name: String,
               flags: String? = nil, transport: String = "auto") throws -> ChildProcess {
    var arguments = ["send", "--socket", broker.socketPath, "--to", destination, "--name", name,
                     "--transport", transport]
    if let flags { arguments += ["--flags", flags] }
    let child = try ChildProcess(name: name, executable: Executables.path("repbroker"), arguments: arguments,
                                 stderrPath: broker.directory + "/\(name).err")
    child.write(lines.map { $0 + "\n" }.joined())
    child.closeInput()
    return child
}

/// One received line, `from=<site> <rec>`.
struct Received: Hashable {
    let source: Int32
    let rec: String

    init?(line: String) {
        guard line.hasPrefix("from="), let space = line.firstIndex(of: " "),
              let source = Int32(line[line.index(line.startIndex, offsetBy: 5)..<space]) else { return nil }
        self.source = source
        rec = String(line[line.index(after: space)...])
    }
}

func parse(_ lines: [String]) -> [Received] { lines.compactMap(Received.init(line:)) }

/// A client of the library, connected to `broker`.
func client(_ broker: BrokerProcess, roles: ClientRoles = [.sender], name: String = "test",
            group: String = "default", transport: ClientTransport = .automatic, ringBytes: Int = 1 << 20) throws -> BrokerClient {
    var options = BrokerClientOptions(socketPath: broker.socketPath, group: group, name: name, roles: roles)
    options.transport = transport
    options.ringBytes = ringBytes
    return try BrokerClient(options: options)
}

/// Receives until `count` messages arrived or a receive waits `timeout` seconds.
func receiveAll(_ receiver: BrokerClient, count: Int, timeout: Double = 20) throws -> [ReceivedMessage] {
    var messages: [ReceivedMessage] = []
    while messages.count < count, let message = try receiver.receive(timeout: timeout) { messages.append(message) }
    return messages
}

/// A value behind a pthread mutex, for state the tests' threads share. ThreadSanitizer sees a pthread mutex;
/// it does not see the futex under Synchronization's Mutex and would report the accesses it orders.
final class Locked<Value>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
