// Where a peer site is dialled: the HOST:PORT text as configured, joined or learned (never a wildcard), its
// resolution (a numeric address at once; a host name by the resolver thread, never on the event loop, and
// again when the last answer is older than `refreshNanoseconds`), and whether a HELLO on a connection
// dialled to it proved the site id. Only a proved (or configured) address is stored in the membership file.
import BrokerSystem
import BrokerWire

struct PeerAddress {
    let text: String
    /// The address to dial, once resolved.
    var resolved: SocketAddress?
    var resolvedAt: UInt64 = 0
    var resolving = false
    /// Why the last resolution failed; nil after a success.
    var failure: String?
    /// A HELLO from this address proved the site id (or the operator configured it).
    var verified: Bool
    let isName: Bool

    /// A name is resolved again before a dial when its last answer is older than this.
    static let refreshNanoseconds: UInt64 = 30_000_000_000

    /// Checks `text`: HOST:PORT, and not the unspecified address (good to listen on, never to dial).
    static func parse(_ text: String, verified: Bool) -> Result<PeerAddress, AddressRefused> {
        guard (try? SocketAddress.split(text)) != nil else { return .failure(AddressRefused(text, "it is not HOST:PORT")) }
        if let numeric = SocketAddress(numeric: text) {
            guard !numeric.isWildcard else {
                return .failure(AddressRefused(text, "it is a wildcard address, which names no host to dial"))
            }
            return .success(PeerAddress(text: text, resolved: numeric, verified: verified, isName: false))
        }
        return .success(PeerAddress(text: text, resolved: nil, verified: verified, isName: true))
    }

    struct AddressRefused: Error, CustomStringConvertible {
        let text: String
        let why: String
        init(_ text: String, _ why: String) {
            self.text = text
            self.why = why
        }
        var description: String { "address '\(text)' refused: \(why)" }
    }

    /// Takes the resolver's answer for this address; returns why it failed (a wildcard answer fails too), or nil.
    mutating func take(_ answer: Result<SocketAddress, SocketAddress.ParseError>, now: UInt64) -> String? {
        resolving = false
        resolvedAt = now
        switch answer {
        case .success(let address) where !address.isWildcard:
            resolved = address
            failure = nil
        case .success:
            failure = "it resolves to a wildcard address"
        case .failure(let error):
            failure = "\(error)"
        }
        return failure
    }

    /// Whether a resolution must be asked for before the next dial.
    func needsResolution(now: UInt64) -> Bool {
        guard isName, !resolving else { return false }
        return resolved == nil || now &- resolvedAt > Self.refreshNanoseconds
    }
}

/// Resolves host names on a thread of its own; the broker collects the answers on its timer tick.
final class PeerResolver: @unchecked Sendable {
    enum Key: Hashable { case site(Int32), join(Int) }

    struct Answer {
        let key: Key
        let text: String
        let result: Result<SocketAddress, SocketAddress.ParseError>
    }

    private let lock = ConditionLock()
    private var requests: [(Key, String)] = []
    private var answers: [Answer] = []
    private var started = false
    private var stopped = false

    /// Asks for `text` to be resolved; the answer comes from `takeAnswers`.
    func request(_ key: Key, _ text: String) {
        lock.withLock {
            requests.append((key, text))
            if !started {
                started = true
                startThread { [self] in serve() }
            }
            lock.broadcast()
        }
    }

    /// The answers that arrived since the last call.
    func takeAnswers() -> [Answer] {
        lock.withLock {
            guard !answers.isEmpty else { return [] }
            defer { answers.removeAll() }
            return answers
        }
    }

    func stop() {
        lock.withLock {
            stopped = true
            lock.broadcast()
        }
    }

    private func serve() {
        while true {
            let next: (Key, String)? = lock.withLock {
                while requests.isEmpty && !stopped { _ = lock.wait(untilNanoseconds: nil) }
                return stopped ? nil : requests.removeFirst()
            }
            guard let (key, text) = next else { return }
            let result: Result<SocketAddress, SocketAddress.ParseError>
            do { result = .success(try SocketAddress(text)) } catch { result = .failure(error) }
            lock.withLock { answers.append(Answer(key: key, text: text, result: result)) }
        }
    }
}
