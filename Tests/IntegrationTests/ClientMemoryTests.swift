// Memory a broker keeps after ring clients leave: batches of concurrent ring clients come and go, and once
// they have left the broker's resident memory returns to where it was before the batch (within 10%), batch
// after batch. (Without handing freed memory back, glibc kept each burst's client buffers: RSS grew.)
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation
import RepBrokerClient
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The resident size once it has not changed for `quiet` seconds (the broker trims a second after clients
/// leave), or the last reading at the deadline.
func steadyResidentBytes(_ pid: Int32, quiet: Double = 1.5, timeout: Double = 20) -> Int {
    let deadline = Posix.monotonicNanoseconds() + UInt64(timeout * 1e9)
    var last = ProcessStats.residentBytes(pid)
    var since = Posix.monotonicNanoseconds()
    while Posix.monotonicNanoseconds() < deadline {
        usleep(100_000)
        let now = ProcessStats.residentBytes(pid)
        if now != last {
            last = now
            since = Posix.monotonicNanoseconds()
        } else if Posix.monotonicNanoseconds() - since >= UInt64(quiet * 1e9) {
            return now
        }
    }
    return last
}

@Suite struct ClientMemoryTests {
    @Test func residentMemoryReturnsAfterBatchesOfRingClientsLeave() throws {
        try withSites(1, extraArguments: ["--heartbeat-ms", "200", "--log-level", "warning"]) { sites in
            let broker = sites.broker(1)
            let pid = try #require(broker.child?.pid)
            let receiver = try client(broker, roles: [.receiver], name: "receiver", transport: .unixSocket)
            defer { receiver.close() }
            func batch(_ number: Int) throws {
                let clients = try (0..<500).map { _ in try client(broker, name: "batch\(number)", transport: .sharedMemory) }
                for (index, sender) in clients.enumerated() {
                    try sender.send(control: [], rec: Array(repeating: UInt8(index & 0xFF), count: 1000), to: 1)
                }
                #expect(try receiveAll(receiver, count: clients.count).count == clients.count)
                clients.forEach { $0.close() }
                #expect(broker.waitForStats(timeout: 20) { $0.clients.count == 1 }, "batch \(number) left")
            }
            try batch(0)  // the first batch sizes the broker's tables
            var resident = [steadyResidentBytes(pid)]
            for number in 1...5 {
                try batch(number)
                resident.append(steadyResidentBytes(pid))
            }
            for (before, after) in zip(resident, resident.dropFirst()) {
                #expect(Double(after) <= Double(before) * 1.1, "resident bytes \(before) -> \(after): \(resident)")
            }
            #expect(Double(resident.last ?? 0) <= Double(resident[0]) * 1.1, "resident bytes by batch: \(resident)")
        }
    }
}
