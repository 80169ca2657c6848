// repbroker-bench mesh --tls: the same mesh over TLS peer links and over plain ones, in the same run, their
// rounds alternating (plain first in odd rounds, TLS first in even ones) so that drift on a noisy host falls
// on both. Reports each round, then per mode the medians: delivered msgs/s, idle and loaded RTT p50, CPU
// seconds per million delivered messages, and TLS over plain for each.
import BrokerHarness
import Foundation

struct MeshTLSComparison: Codable {
    let mode: String
    let rounds: Int
    let plainMessagesPerSecond: Double
    let tlsMessagesPerSecond: Double
    let throughputRatio: Double
    let plainIdleRTTP50: Double
    let tlsIdleRTTP50: Double
    let idleRTTP50Ratio: Double
    let plainLoadedRTTP50: Double
    let tlsLoadedRTTP50: Double
    let plainCPUSecondsPerMillion: Double
    let tlsCPUSecondsPerMillion: Double
    let dropped: Int
    enum CodingKeys: String, CodingKey {
        case mode, rounds, dropped
        case plainMessagesPerSecond = "plain_msgs_per_s", tlsMessagesPerSecond = "tls_msgs_per_s"
        case throughputRatio = "tls_over_plain_throughput"
        case plainIdleRTTP50 = "plain_rtt_idle_p50_us", tlsIdleRTTP50 = "tls_rtt_idle_p50_us"
        case idleRTTP50Ratio = "tls_over_plain_rtt_idle_p50"
        case plainLoadedRTTP50 = "plain_rtt_loaded_p50_us", tlsLoadedRTTP50 = "tls_rtt_loaded_p50_us"
        case plainCPUSecondsPerMillion = "plain_cpu_s_per_million_msgs", tlsCPUSecondsPerMillion = "tls_cpu_s_per_million_msgs"
    }
}

enum MeshTLSBench {
    /// Every round of every broker mode, plain and TLS alternating; then the comparison per mode.
    static func run(_ options: MeshOptions, rounds: Int, log: (String) -> Void) throws
        -> (results: [MeshResult], comparisons: [MeshTLSComparison]) {
        let certificates = try TestCertificates.group(sites: Array(1...options.sites))
        var results: [MeshResult] = []
        var comparisons: [MeshTLSComparison] = []
        for mode in options.modes where mode != "direct" {
            var plain: [MeshResult] = []
            var tls: [MeshResult] = []
            for round in 0..<rounds {
                for useTLS in round % 2 == 0 ? [false, true] : [true, false] {
                    var roundOptions = options
                    roundOptions.certificates = useTLS ? certificates : nil
                    let result = try MeshBench.measure(mode: mode, roundOptions, log: log)
                    if useTLS { tls.append(result) } else { plain.append(result) }
                    results.append(result)
                }
            }
            let plainRate = plain.map(\.messagesPerSecond).median
            let tlsRate = tls.map(\.messagesPerSecond).median
            let plainIdle = plain.compactMap { $0.rttIdle?.p50 }.median
            let tlsIdle = tls.compactMap { $0.rttIdle?.p50 }.median
            comparisons.append(MeshTLSComparison(
                mode: mode, rounds: rounds, plainMessagesPerSecond: plainRate, tlsMessagesPerSecond: tlsRate,
                throughputRatio: tlsRate / max(plainRate, 1), plainIdleRTTP50: plainIdle, tlsIdleRTTP50: tlsIdle,
                idleRTTP50Ratio: tlsIdle / max(plainIdle, 1),
                plainLoadedRTTP50: plain.compactMap { $0.rttLoaded?.p50 }.median,
                tlsLoadedRTTP50: tls.compactMap { $0.rttLoaded?.p50 }.median,
                plainCPUSecondsPerMillion: plain.map(\.cpuSecondsPerMillion).median,
                tlsCPUSecondsPerMillion: tls.map(\.cpuSecondsPerMillion).median,
                dropped: (plain + tls).reduce(0) { $0 + $1.dropped }))
        }
        return (results, comparisons)
    }

    static func table(_ results: [MeshResult], _ comparisons: [MeshTLSComparison]) -> String {
        var out = "every round (links: plain or TLS), in the order run:\n"
        out += MeshBench.table(results.map { result in
            MeshResult(mode: result.mode + (result.links?.hasPrefix("TLS") == true ? "+tls" : ""), expected: result.expected,
                       delivered: result.delivered, dropped: result.dropped, messagesPerSecond: result.messagesPerSecond,
                       megabytesPerSecond: result.megabytesPerSecond, rttIdle: result.rttIdle, rttLoaded: result.rttLoaded,
                       connectionsPerHost: result.connectionsPerHost, brokerRSSBytes: result.brokerRSSBytes,
                       cpuSecondsPerMillion: result.cpuSecondsPerMillion, linkResets: result.linkResets, links: result.links)
        })
        if let cipher = results.first(where: { $0.links?.hasPrefix("TLS") == true })?.links { out += "TLS links: \(cipher)\n" }
        func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count + 1), withPad: " ", startingAt: 0) }
        out += "\n" + pad("medians", 8) + pad("plain msgs/s", 14) + pad("tls msgs/s", 12) + pad("tls/plain", 11)
            + pad("idle p50 plain/tls", 20) + pad("tls/plain", 11) + pad("loaded p50 plain/tls", 22) + "cpu s/M plain/tls\n"
        for c in comparisons {
            out += pad(c.mode, 8) + pad(String(format: "%.0f", c.plainMessagesPerSecond), 14)
                + pad(String(format: "%.0f", c.tlsMessagesPerSecond), 12) + pad(String(format: "%.2fx", c.throughputRatio), 11)
                + pad(String(format: "%.0f / %.0f us", c.plainIdleRTTP50, c.tlsIdleRTTP50), 20)
                + pad(String(format: "%.2fx", c.idleRTTP50Ratio), 11)
                + pad(String(format: "%.0f / %.0f us", c.plainLoadedRTTP50, c.tlsLoadedRTTP50), 22)
                + String(format: "%.2f / %.2f", c.plainCPUSecondsPerMillion, c.tlsCPUSecondsPerMillion) + "\n"
        }
        return out
    }
}
