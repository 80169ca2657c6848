// A real repbrokerd process on loopback: its ports, socket paths, log file, start, kill and restart.
import BrokerDaemon
import BrokerSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One site's broker as a child process.
public final class BrokerProcess: @unchecked Sendable {
    public let siteID: Int32
    public let port: UInt16
    public let directory: String
    public var peers: [(Int32, UInt16)]
    /// --listen; by default 127.0.0.1 and `port`.
    public var listenAddress: String
    /// The host of every --peer address (its port comes from `peers`).
    public var peerHost: (Int32) -> String = { _ in "127.0.0.1" }
    public var extraArguments: [String]
    /// Added to this process's environment for the broker (NOTIFY_SOCKET, ...).
    public var environment: [String: String] = [:]
    /// The broker program: the root package's repbrokerd unless told otherwise.
    public var program: Program
    public private(set) var child: ChildProcess?

    public var socketPath: String { "\(directory)/site\(siteID).sock" }
    public var adminSocketPath: String { "\(directory)/site\(siteID).admin" }
    public var logPath: String { "\(directory)/site\(siteID).log" }

    public init(siteID: Int32, port: UInt16, directory: String, peers: [(Int32, UInt16)],
                extraArguments: [String] = [], program: Program = .repbrokerd) {
        self.program = program
        self.siteID = siteID
        self.port = port
        self.directory = directory
        self.peers = peers
        self.extraArguments = extraArguments
        listenAddress = "127.0.0.1:\(port)"
    }

    public var arguments: [String] {
        ["--site-id", "\(siteID)", "--listen", listenAddress, "--socket", socketPath,
         "--admin-socket", adminSocketPath, "--exit-with-parent"]
            + peers.flatMap { ["--peer", "\($0.0)=\(peerHost($0.0)):\($0.1)"] } + extraArguments
    }

    /// Starts the broker and waits until its admin socket answers.
    public func start(timeout: Double = 10) throws {
        let child = try ChildProcess(name: "repbrokerd-\(siteID)", program: program,
                                     arguments: arguments, stderrPath: logPath, environment: environment)
        self.child = child
        let ready = Deadline.wait(timeout: timeout) {
            !child.isRunning || (try? AdminClient.stats(adminSocket: adminSocketPath)) != nil
        }
        guard ready, child.isRunning else {
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw HarnessError("broker \(siteID) did not start: \(log.suffix(2000))")
        }
    }

    public func stats() throws -> BrokerStats { try AdminClient.stats(adminSocket: adminSocketPath) }

    /// Waits until `condition` holds for this broker's stats.
    @discardableResult
    public func waitForStats(timeout: Double, _ condition: (BrokerStats) -> Bool) -> Bool {
        Deadline.wait(timeout: timeout, interval: 0.02) {
            guard let stats = try? stats() else { return false }
            return condition(stats)
        }
    }

    /// Waits until every configured peer link is connected.
    @discardableResult
    public func waitForPeers(timeout: Double) -> Bool {
        waitForStats(timeout: timeout) { stats in stats.peers.allSatisfy { $0.state == .connected } }
    }

    public func kill9() { child?.kill9() }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    public func terminate(timeout: Double = 10) -> Int32? {
        guard let child else { return nil }
        child.signal(SIGTERM)
        if let status = child.waitForExit(timeout: timeout) { return status }
        child.kill9()
        return nil
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// N brokers on loopback, fully meshed by static --peer lists, in one temporary directory.
public final class LocalSites: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let brokers: [BrokerProcess]

    public init(count: Int, extraArguments: [String] = ["--heartbeat-ms", "200"],
                program: Program = .repbrokerd) throws {
        let directory = try TemporaryDirectory()
        let ports = (0..<count).map { _ in FreePort.next() }
        self.directory = directory
        brokers = (0..<count).map { index in
            let peers = (0..<count).filter { $0 != index }.map { (Int32($0 + 1), ports[$0]) }
            return BrokerProcess(siteID: Int32(index + 1), port: ports[index], directory: directory.path, peers: peers,
                                 extraArguments: extraArguments, program: program)
        }
    }

    public func broker(_ siteID: Int32) -> BrokerProcess { brokers[Int(siteID) - 1] }

    /// Starts every broker and waits for the full mesh.
    public func start(timeout: Double = 20) throws {
        for broker in brokers { try broker.start() }
        for broker in brokers where !broker.waitForPeers(timeout: timeout) {
            throw HarnessError("site \(broker.siteID) did not link to every peer: \(broker.log.suffix(2000))")
        }
    }

    /// Stops every broker and removes the directory.
    public func shutDown() {
        for broker in brokers { broker.terminate() }
        directory.remove()
    }
}
