// A group congested on purpose: its receiver at site 2 stops reading (its library's inbox is small), so site 2
// withholds credit, site 1's flow fills, and site 1's producers of the group are paused. Tests then see what
// clients do while the broker takes nothing from them.
import BrokerHarness
import BrokerSystem
import RepBrokerClient
import Testing

/// Extra arguments for brokers whose groups congest quickly: a 64 KiB window.
let congestibleSites = ["--heartbeat-ms", "200", "--flow-window-bytes", "65536"]

final class CongestedGroup: @unchecked Sendable {
    let receiver: BrokerClient
    let filler: BrokerClient
    private let stop = StopFlag()

    /// A receiver that reads nothing until told: on the socket, with a library inbox of 64 KiB, so its broker's
    /// queue for it fills soon and the broker withholds credit from its group's flows.
    static func slowReceiver(_ broker: BrokerProcess, group: String = "default") throws -> BrokerClient {
        var options = BrokerClientOptions(socketPath: broker.socketPath, group: group, name: "slow", roles: [.receiver])
        options.transport = .unixSocket
        options.inboxLimitBytes = 64 << 10
        return try BrokerClient(options: options)
    }

    /// Congests `group` from site 1 to site 2 of `sites` and waits until site 1 pauses its producers.
    init(_ sites: LocalSites, group: String = "default", fillerName: String = "filler") throws {
        receiver = try Self.slowReceiver(sites.broker(2), group: group)
        filler = try client(sites.broker(1), name: fillerName, group: group, transport: .unixSocket)
        let rec = [UInt8](repeating: 1, count: 4096)
        startThread { [filler, stop] in
            while !stop.isSet, (try? filler.send(control: [], rec: rec, to: 2)) != nil {}
        }
        guard sites.broker(1).waitForStats(timeout: 20, { $0.clients.first { $0.name == fillerName }?.paused == true }) else {
            throw HarnessError("the group did not congest")
        }
    }

    /// The receiver reads again (and drops what it reads); the filler stops.
    func release() {
        stop.set()
        startThread { [receiver] in
            while (try? receiver.receive(timeout: 2)) != nil {}
        }
    }

    func close() {
        stop.set()
        filler.close()
        receiver.close()
    }
}
