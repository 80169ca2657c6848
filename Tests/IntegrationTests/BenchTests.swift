// The benchmarks' own transports and counters (no timing is asserted): a short mesh run in each mode
// delivers exactly what its senders sent, the ipc bench runs both transports and its relay reference, and
// the pingpong bench completes every round trip with each idle strategy and its direct baseline.
import BrokerHarness
import Foundation
import Testing

@Suite struct BenchTests {
    @Test func aShortMeshRunInEachModeDeliversExactlyWhatWasSent() throws {
        let (status, output) = try runToExit("repbroker-bench", ["mesh", "--sites", "3", "--senders", "2",
                                                           "--count", "300", "--json"], timeout: 240)
        #expect(status == 0, "\(output.suffix(1000))")
        struct Result: Decodable { let mode: String; let expected: Int; let delivered: Int; let dropped: Int }
        struct Report: Decodable { let results: [Result] }
        let json = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") })
        let report = try JSONDecoder().decode(Report.self, from: Data(json.utf8))
        #expect(report.results.map(\.mode) == ["direct", "uds", "shm"])
        for result in report.results {
            // 3 sites x 2 senders x 300 messages: half unicast, half broadcast to the 2 other sites.
            #expect(result.expected == 3 * 2 * (150 + 150 * 2), "\(result.mode)")
            #expect(result.delivered == result.expected && result.dropped == 0, "\(result.mode)")
        }
    }

    /// The scale bench runs every part on a small group in namespaces, and what it reports holds together: every
    /// message delivered, a mesh and a join that completed, a killed site seen down and back, a link that
    /// carried heartbeat bytes, and clients that cost descriptors.
    @Test(.enabled(if: NetworkNamespaces.available, "\(NetworkNamespaces.unavailableReason)"))
    func aSmallScaleRunMeasuresEveryPart() throws {
        let (status, output) = try runToExit("repbroker-bench", ["scale", "--sites", "3", "--clients", "40", "--groups", "10",
                                                                 "--seconds", "0.5", "--json"], timeout: 240)
        #expect(status == 0, "\(output.suffix(1000))")
        struct Sites: Decodable {
            let sites: Int; let mesh_s: Double; let join_s: Double; let idle_bytes_per_s_per_link: Double
            let down_seen_s: Double; let return_seen_s: Double; let broadcast_delivered_per_s: Double
            let unicast_delivered_per_s: Double; let dropped: Int
        }
        struct Clients: Decodable { let clients: Int; let socket_descriptors_per_client: Double; let register_s: Double }
        struct Report: Decodable { let sites: [Sites]; let clients: Clients }
        let json = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") })
        let report = try JSONDecoder().decode(Report.self, from: Data(json.utf8))
        let three = try #require(report.sites.first)
        #expect(three.sites == 3 && three.dropped == 0)
        #expect(three.mesh_s > 0 && three.join_s > 0 && three.down_seen_s >= 0 && three.return_seen_s > 0)
        #expect(three.idle_bytes_per_s_per_link > 0, "heartbeats cross an idle link")
        #expect(three.broadcast_delivered_per_s > 0 && three.unicast_delivered_per_s > 0)
        #expect(report.clients.clients == 40 && report.clients.socket_descriptors_per_client >= 1)
    }

    /// Every phase of the isolation bench runs: the oltp pinger and committer finish with no failed commit and
    /// every round trip answered, and bulk loses nothing, slowed receiver included.
    @Test func theIsolationBenchRunsEveryPhaseAndBulkLosesNothing() throws {
        let (status, output) = try runToExit("repbroker-bench", ["isolation", "--senders", "1", "--seconds", "0.5",
                                                           "--delay-us", "50", "--json"], timeout: 240)
        #expect(status == 0, "\(output.suffix(1000))")
        struct Latency: Decodable { let lost: Int }
        struct Phase: Decodable {
            let phase: String; let rtt: Latency?; let commit: Latency?; let bulk_expected: Int?; let bulk_dropped: Int?
        }
        struct Report: Decodable { let phases: [Phase] }
        let json = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") })
        let report = try JSONDecoder().decode(Report.self, from: Data(json.utf8))
        #expect(report.phases.map(\.phase) == ["oltp alone", "bulk alone", "oltp + bulk", "oltp + slow bulk", "oltp + busy cores"])
        for phase in report.phases {
            if phase.phase.hasPrefix("oltp") {
                #expect(phase.rtt?.lost == 0 && phase.commit?.lost == 0, "\(phase.phase)")
            }
            if phase.phase.contains("bulk") {
                #expect((phase.bulk_expected ?? 0) > 0 && phase.bulk_dropped == 0, "\(phase.phase)")
            }
        }
    }

    /// A short soak: clients come and go on both transports (some killed with -9), a site joins and another is
    /// removed, and the brokers that ran throughout end with the descriptors, threads and mappings they had
    /// before the churn (no leak of a client's socket, ring mapping or doorbell; anonymous mappings are the
    /// allocator's). Its memory slope needs a long
    /// run and is not read here.
    @Test func aShortSoakLeavesNoDescriptorThreadOrMappingBehind() throws {
        let (_, output) = try runToExit("repbroker-bench", ["soak", "--minutes", "0.4", "--sample-seconds", "4",
                                                      "--clients", "4", "--json"], timeout: 240)
        struct Sample: Decodable { let descriptors: Int; let threads: Int; let file_mappings: Int; let shared_mappings: Int }
        struct Memory: Decodable { let rss_bytes: Int; let own_rss_bytes: Int }
        struct Broker: Decodable {
            let site: Int32; let baseline: Sample; let end: Sample; let returned_to_baseline: Bool
            let quiesced_samples: [Memory]
        }
        struct Report: Decodable { let clients_started: Int; let clients_killed: Int; let replies: Int; let brokers: [Broker] }
        let json = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") }, "\(output.suffix(1000))")
        let report = try JSONDecoder().decode(Report.self, from: Data(json.utf8))
        #expect(report.clients_started > 10 && report.clients_killed > 0 && report.replies > 0)
        #expect(report.brokers.map(\.site) == [1, 2])
        for broker in report.brokers {
            #expect(broker.returned_to_baseline, "site \(broker.site): \(broker.baseline) -> \(broker.end)")
            #expect(broker.baseline.shared_mappings > 0, "the long-lived channel server's rings are counted")
            // The memory criterion's samples: the baseline and the end, both with the churn paused.
            #expect(broker.quiesced_samples.count >= 2)
            #expect(broker.quiesced_samples.allSatisfy { $0.own_rss_bytes > 0 && $0.own_rss_bytes <= $0.rss_bytes })
        }
    }

    @Test func theIPCBenchRunsBothTransports() throws {
        let (status, output) = try runToExit("repbroker-bench", ["ipc", "--seconds", "0.3", "--rounds", "2", "--json"],
                                             timeout: 120)
        #expect(status == 0, "\(output.suffix(1000))")
        struct Round: Decodable { let messages: Int }
        struct Row: Decodable {
            let transport: String, rounds: [Round], msgs_per_s: Double, msgs_per_s_lowest: Double, msgs_per_s_highest: Double
        }
        struct Report: Decodable { let rows: [Row] }
        let json = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") })
        let report = try JSONDecoder().decode(Report.self, from: Data(json.utf8))
        #expect(report.rows.map(\.transport) == ["uds", "shm", "relay"])
        for row in report.rows {
            #expect(row.rounds.count == 2 && row.rounds.allSatisfy { $0.messages > 0 }, "\(row.transport)")
            #expect(row.msgs_per_s_lowest <= row.msgs_per_s && row.msgs_per_s <= row.msgs_per_s_highest, "\(row.transport)")
        }
    }

    @Test func thePingPongBenchCompletesEveryRoundTripWithEachStrategy() throws {
        let (status, output) = try runToExit("repbroker-bench", ["pingpong", "--count", "300", "--json"], timeout: 120)
        #expect(status == 0, "\(output.suffix(1000))")
        struct Result: Decodable { let path: String, round_trips: Int, p50_us: Double, p99_us: Double }
        struct Report: Decodable { let results: [Result], direct: Result }
        let json = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") })
        let report = try JSONDecoder().decode(Report.self, from: Data(json.utf8))
        #expect(report.results.map(\.path) == ["broker (spin)", "broker (backoff)", "broker (block)"])
        for result in report.results + [report.direct] {
            #expect(result.round_trips == 300 && result.p50_us > 0 && result.p50_us <= result.p99_us, "\(result.path)")
        }
    }

    /// The idle benchmark measures a broker with ring clients that send nothing (its figure is the benchmark's,
    /// not this test's: no timing is asserted here).
    @Test func theIdleBenchMeasuresABrokerWithRingClients() throws {
        let (status, output) = try runToExit("repbroker-bench", ["idle", "--clients", "10", "--seconds", "0.5", "--json"],
                                             timeout: 120)
        #expect(status == 0, "\(output.suffix(1000))")
        struct Result: Decodable { let clients: Int, seconds: Double, cpu_percent_of_a_core: Double }
        let json = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") })
        let result = try JSONDecoder().decode(Result.self, from: Data(json.utf8))
        #expect(result.clients == 10 && result.seconds >= 0.5 && result.cpu_percent_of_a_core >= 0)
    }
}
