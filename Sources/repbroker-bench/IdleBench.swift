// repbroker-bench idle: what an idle broker costs. Starts a broker, connects N clients on shared-memory rings
// that send nothing, and measures the broker's CPU over S seconds in which nothing happens by design.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient

struct IdleResult: Codable {
    let clients: Int
    let idleStrategy: String
    let seconds: Double
    let cpuPercent: Double
    enum CodingKeys: String, CodingKey {
        case clients, seconds, idleStrategy = "idle_strategy", cpuPercent = "cpu_percent_of_a_core"
    }
}

enum IdleBench {
    static func measure(clients count: Int, strategy: IdleStrategyKind, seconds: Double) throws -> IdleResult {
        let sites = try LocalSites(count: 1, extraArguments: ["--log-level", "warning", "--idle-strategy", strategy.rawValue],
                                   program: .current("daemon"))
        defer { sites.shutDown() }
        try sites.start()
        let broker = sites.broker(1)
        guard let pid = broker.child?.pid else { throw HarnessError("the broker did not start") }
        let clients = try (0..<count).map { index in
            var options = BrokerClientOptions(socketPath: broker.socketPath, name: "idle-\(index)")
            options.transport = .sharedMemory
            options.ringBytes = 4096
            return try BrokerClient(options: options)
        }
        defer { clients.forEach { $0.close() } }
        guard broker.waitForStats(timeout: 30, { $0.clients.count == count }) else {
            throw HarnessError("not every client registered")
        }
        let cpuBefore = ProcessStats.cpuSeconds(pid)
        let start = Posix.monotonicNanoseconds()
        // The measured interval: nothing is sent, so nothing is waited for.
        Thread.sleep(forTimeInterval: seconds)
        let wall = Double(Posix.monotonicNanoseconds() - start) / 1e9
        let share = (ProcessStats.cpuSeconds(pid) - cpuBefore) / wall * 100
        return IdleResult(clients: count, idleStrategy: strategy.rawValue, seconds: wall, cpuPercent: share)
    }
}
