// repbroker stats: one snapshot (table or JSON), or one every --watch seconds.
import BrokerDaemon
import BrokerSystem
import Foundation

enum StatsCommand: Command {
    static let help = """
        USAGE: repbroker stats [--admin-socket PATH] [--json] [--watch SECONDS]

        Shows site id, pid, uptime; per peer: address, state (connected / connecting / down), messages and
        payload bytes each way, queued bytes, dropped, refused, reconnects, ms since last heard; per peer, group
        and traffic class (FLOWS): queued bytes, window left, credit owed to the peer, whether the group's
        producers are paused, frames and bytes each way, stalls (window used up); per client: pid, name, group,
        roles, transport, messages and bytes each way, dropped; and totals (bad_frames ...).

        OPTIONS:
          --admin-socket PATH  The broker's admin socket (default: \(BrokerConfig.defaultAdminSocketPath)).
          --json               One JSON object: site_id, pid, uptime_ms, peers, clients, groups, totals.
          --watch SECONDS      Repeat every SECONDS until interrupted.
        """
    static let valuedOptions: Set<String> = ["admin-socket", "watch"]
    static let flagNames: Set<String> = ["json"]

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let path = arguments.last("admin-socket") ?? BrokerConfig.defaultAdminSocketPath
        let watch = try arguments.seconds("watch")
        if let watch, watch <= 0 { throw UsageError("--watch needs a positive number of seconds") }
        repeat {
            let stats = try AdminClient.stats(adminSocket: path)
            if arguments.has("json") {
                Console.writeOutput(try jsonLine(stats) + "\n")
            } else {
                Console.writeOutput((watch != nil ? "\u{1B}[2J\u{1B}[H" : "") + stats.table)
            }
            if let watch { usleep(UInt32(watch * 1e6)) }
        } while watch != nil
        return 0
    }
}
