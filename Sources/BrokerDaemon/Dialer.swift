// Dials the core asks for (`CoreAction.dial`, `.dialJoin`): a numeric address is connected at once; a host name
// is resolved on a thread of its own (the loop never blocks on DNS), its answer kept for 30 s, and connected
// when the answer comes (collected on the timer tick). A name that does not resolve (or resolves to a wildcard
// address), or a connect that fails at once, is reported to the core, which logs it and retries with its backoff.
import BrokerSystem

final class Dialer {
    enum Target: Hashable { case site(Int32), join(Int) }

    private let resolver = Resolver()
    private let logger: Logger
    /// Answers by host text, and when they came (a name's address may change: it is asked again after 30 s).
    private var answers: [String: (address: SocketAddress, at: UInt64)] = [:]
    /// Targets waiting for the resolver, by text (one request per text at a time).
    private var waiting: [String: Set<Target>] = [:]
    static let answerLifetime: UInt64 = 30_000_000_000

    init(logger: Logger) { self.logger = logger }

    func dial(_ target: Target, _ text: String, now: UInt64, broker: Broker) {
        if let address = SocketAddress(numeric: text) {
            return connect(target, text, address, broker: broker)
        }
        if let answer = answers[text], now &- answer.at < Self.answerLifetime {
            return connect(target, text, answer.address, broker: broker)
        }
        if waiting[text] == nil {
            waiting[text] = [target]
            resolver.request(text)
        } else {
            waiting[text]?.insert(target)
        }
    }

    /// Connects the targets whose names were resolved since the last call; reports those that were not.
    func takeAnswers(now: UInt64, broker: Broker) {
        for answer in resolver.takeAnswers() {
            let targets = waiting.removeValue(forKey: answer.text) ?? []
            switch answer.result {
            case .success(let address) where address.isWildcard:
                // A name for the unspecified address names no host to dial (connecting to it reaches this one).
                answers[answer.text] = nil
                for target in targets { failed(target, "it resolves to a wildcard address", unresolved: true, broker: broker) }
            case .success(let address):
                answers[answer.text] = (address, now)
                for target in targets.sorted(by: { "\($0)" < "\($1)" }) { connect(target, answer.text, address, broker: broker) }
            case .failure(let error):
                answers[answer.text] = nil
                for target in targets { failed(target, "\(error)", unresolved: true, broker: broker) }
            }
        }
        broker.performActions()
    }

    private func connect(_ target: Target, _ text: String, _ address: SocketAddress, broker: Broker) {
        let core = broker.core
        let session: Session?
        switch target {
        case .site(let site): session = core.openDial(site: site, address: text)
        case .join(let index): session = core.openJoinDial(index: index)
        }
        guard let session else { return }
        let socket: OwnedDescriptor
        do { socket = try Socket.connectTCP(address) } catch {
            core.failed(session, reason: "\(error)")
            if case .join = target { failed(target, "\(error)", unresolved: false, broker: broker) }
            return
        }
        let description: String
        switch target {
        case .site(let site): description = "site \(site)"
        case .join: description = "join target \(text)"
        }
        broker.learnLocalAddress(of: socket.number, connectionTo: description)
        broker.serve(socket, session, connecting: true, peer: true)
    }

    private func failed(_ target: Target, _ reason: String, unresolved: Bool, broker: Broker) {
        switch target {
        case .site(let site): broker.core.dialFailed(site: site, reason: reason, unresolved: unresolved)
        case .join(let index): broker.core.joinDialFailed(index: index, reason: reason)
        }
    }

    func stop() { resolver.stop() }
}

/// Resolves host names on a thread of its own; the loop collects the answers.
final class Resolver: @unchecked Sendable {
    struct Answer {
        let text: String
        let result: Result<SocketAddress, SocketAddress.ParseError>
    }

    private let lock = ConditionLock()
    private var requests: [String] = []
    private var answers: [Answer] = []
    private var started = false
    private var stopped = false

    /// Asks for `text` to be resolved; the answer comes from `takeAnswers`.
    func request(_ text: String) {
        lock.withLock {
            requests.append(text)
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
            let next: String? = lock.withLock {
                while requests.isEmpty && !stopped { _ = lock.wait(untilNanoseconds: nil) }
                return stopped ? nil : requests.removeFirst()
            }
            guard let text = next else { return }
            let result: Result<SocketAddress, SocketAddress.ParseError>
            do { result = .success(try SocketAddress(text)) } catch { result = .failure(error) }
            lock.withLock { answers.append(Answer(text: text, result: result)) }
        }
    }
}
