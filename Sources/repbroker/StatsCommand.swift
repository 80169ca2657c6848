// repbroker stats: one snapshot (table or JSON), or one every --watch seconds.
import BrokerDaemon
import BrokerSystem
import Foundation

enum StatsCommand: Command {
    static let help = """
        USAGE: repbroker stats [--admin-socket PATH] [--json | --prometheus] [--watch SECONDS]

        Shows site id, pid, uptime; per peer: address, state (connected / connecting / down), messages and
        payload bytes each way, queued bytes, dropped, refused, reconnects, ms since last heard; per peer, group
        and traffic class (FLOWS): queued bytes, window left, credit owed to the peer, whether the group's
        producers are paused, frames and bytes each way, stalls (window used up); per client: pid, name, group,
        roles, transport, messages and bytes each way, dropped; latency over the last minute (p50, p99, max):
        round trips of heartbeat probes and time queued per peer, PERMANENT ack wait per group; and totals
        (bad_frames ...).

        OPTIONS:
          --admin-socket PATH  The broker's admin socket (default: \(BrokerConfig.defaultAdminSocketPath)).
          --json               One JSON object: site_id, pid, uptime_ms, peers, clients, groups, totals.
                               Histograms (rtt, time_queued, ack_wait): count, sum_s, buckets (per bucket;
                               bounds 1us, 2.5us, 5us, 10us ... 5s, 10s, then above) and last_minute (count,
                               p50_s, p99_s, max_s).
          --prometheus         The Prometheus text format (0.0.4), as repbrokerd --metrics-listen serves it.
          --watch SECONDS      Repeat every SECONDS until interrupted.
        """
    static let valuedOptions: Set<String> = ["admin-socket", "watch"]
    static let flagNames: Set<String> = ["json", "prometheus"]

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let path = arguments.last("admin-socket") ?? BrokerConfig.defaultAdminSocketPath
        let watch = try arguments.seconds("watch")
        if let watch, watch <= 0 { throw UsageError("--watch needs a positive number of seconds") }
        if arguments.has("json") && arguments.has("prometheus") { throw UsageError("--json or --prometheus, not both") }
        repeat {
            let stats = try AdminClient.stats(adminSocket: path)
            if arguments.has("json") {
                Console.writeOutput(try jsonLine(stats) + "\n")
            } else if arguments.has("prometheus") {
                Console.writeOutput(stats.prometheusText)
            } else {
                Console.writeOutput((watch != nil ? "\u{1B}[2J\u{1B}[H" : "") + stats.table)
            }
            if let watch { usleep(UInt32(watch * 1e6)) }
        } while watch != nil
        return 0
    }
}
