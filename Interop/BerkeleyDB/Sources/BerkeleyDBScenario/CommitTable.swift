// The commit benchmark's table for one writer count: one row per transport, and the broker's ratios against
// the best repmgr row (patched included) measured in the same run.
import BrokerHarness
import Foundation

public enum CommitTable {
    public static func render(_ rows: [CommitBenchResult]) -> String {
        guard let writers = rows.first?.writers else { return "" }
        var out = "\n\(writers) writer\(writers == 1 ? "" : "s") per site (\(CommitBenchResult.durabilitySetting))\n"
        let header = ["transport", "txns", "txn/s", "of local", "p50 us", "p99 us", "perm fail", "startup fail",
                      "dropped", "stalls", "re-requested", "tcp/host", "cpu s/1k", "brokers", "repl", "writers", "wake/commit"]
        let ran = rows.filter { $0.failure == nil }
        let local = ran.first { $0.transport == CommitTransport.local.rawValue }?.txnsPerSecond
        let cells = ran.map { row in
            [row.label, "\(row.txnsCommitted)", String(format: "%.0f", row.txnsPerSecond),
             local.map { String(format: "%.2f", row.txnsPerSecond / max($0, 1)) } ?? "-", "\(row.commitP50Microseconds)",
             "\(row.commitP99Microseconds)", "\(row.permFailures)", "\(row.startupPermFailures)",
             "\(row.brokerDropped)", "\(row.brokerFlowStalls)", "\(row.clientRecordsRequested)", "\(row.tcpConnectionsPerHost)", String(format: "%.2f", row.cpuSecondsPer1000Commits),
             String(format: "%.2f", row.cpuBrokers), String(format: "%.2f", row.cpuReplication),
             String(format: "%.2f", row.cpuWriters),
             String(format: "%.1f (%.1f %.1f %.1f)", row.wakeups, row.wakeupsBrokers, row.wakeupsReplication,
                    row.wakeupsWriters)]
        }
        let widths = header.indices.map { column in ([header] + cells).map { $0[column].count }.max() ?? 0 }
        for line in [header] + cells {
            out += zip(line, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
                .joined(separator: "  ") + "\n"
        }
        for row in rows where row.failure != nil {
            out += "\(row.label): FAILED, no figures: \(row.failure ?? "")\n"
        }
        let bounds = CommitBenchResult.histogramBoundsMicroseconds.map { $0 >= 1000 ? "\($0 / 1000)ms" : "\($0)us" }
        out += "commits by latency, at most " + bounds.joined(separator: " ") + " (then more):\n"
        for row in ran {
            out += "  " + row.label.padding(toLength: 42, withPad: " ", startingAt: 0)
                + row.latencyHistogram.map(String.init).joined(separator: " ") + "\n"
        }
        if let broker = ran.first(where: { $0.transport == CommitTransport.broker.rawValue }),
           let best = ran.filter({ CommitTransport(rawValue: $0.transport)?.isRepmgr == true })
               .max(by: { $0.txnsPerSecond < $1.txnsPerSecond }) {
            out += String(format: "broker / best repmgr (%@): %.2fx txn/s, commit p99 %d us against %d us\n",
                          best.label, broker.txnsPerSecond / max(best.txnsPerSecond, 1),
                          broker.commitP99Microseconds, best.commitP99Microseconds)
        }
        if let swift = ran.first(where: { $0.transport == CommitTransport.broker.rawValue }),
           let c = ran.first(where: { $0.transport == CommitTransport.brokerC.rawValue }) {
            out += String(format: "C writers / Swift writers: %.2fx txn/s, commit p99 %d us against %d us\n",
                          c.txnsPerSecond / max(swift.txnsPerSecond, 1), c.commitP99Microseconds, swift.commitP99Microseconds)
        }
        return out
    }

    /// Several rounds of the same transports: every round's table, then each transport's median txn/s with its
    /// range, its median commit p50 and p99 and its perm failures, and each TLS row against its plain twin.
    public static func renderRounds(_ rows: [CommitBenchResult], transports: [CommitTransport]) -> String {
        guard let writers = rows.first?.writers else { return "" }
        var out = render(rows)
        var medians: [CommitTransport: Double] = [:]
        out += "\nmedians over the rounds, \(writers) writer\(writers == 1 ? "" : "s") per site:\n"
        for transport in transports {
            let ran = rows.filter { $0.transport == transport.rawValue && $0.failure == nil }
            let rates = ran.map(\.txnsPerSecond)
            medians[transport] = rates.median
            out += "  " + (ran.first?.label ?? transport.label).padding(toLength: 46, withPad: " ", startingAt: 0)
                + String(format: "%.0f txn/s (%.0f - %.0f, %d of %d rounds), p50 %.0f us, p99 %.0f us, perm failures %d, dropped %d\n",
                         rates.median, rates.min() ?? 0, rates.max() ?? 0, ran.count,
                         rows.filter { $0.transport == transport.rawValue }.count,
                         ran.map { Double($0.commitP50Microseconds) }.median, ran.map { Double($0.commitP99Microseconds) }.median,
                         ran.reduce(0) { $0 + $1.permFailures }, ran.reduce(0) { $0 + $1.brokerDropped })
        }
        for (tls, plain) in [(CommitTransport.brokerTLS, CommitTransport.broker), (.brokerCTLS, .brokerC)] {
            guard let secure = medians[tls], let clear = medians[plain] else { continue }
            let pairs = zip(rows.filter { $0.transport == tls.rawValue }, rows.filter { $0.transport == plain.rawValue })
                .map { $0.txnsPerSecond / max($1.txnsPerSecond, 1) }
            out += String(format: "%@ / %@: %.2fx txn/s (medians); round by round: %@\n", tls.rawValue, plain.rawValue,
                          secure / max(clear, 1), pairs.map { String(format: "%.2f", $0) }.joined(separator: " "))
        }
        return out
    }
}
