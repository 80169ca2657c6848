// What the client subcommands share: --to and --transport.
import BrokerDaemon
import Foundation
import RepBrokerClient

/// Parses --to: a site id, "all" (broadcast) or "master" (the site last announced as master).
func parseDestination(_ text: String?) throws(UsageError) -> Int32 {
    guard let text else { throw UsageError("--to is required: a site id, 'all' or 'master'") }
    if text == "all" || text == "broadcast" { return SiteID.broadcast }
    if text == "master" { return SiteID.master }
    guard let site = Int32(text), site > 0 else {
        throw UsageError("--to takes a positive site id, 'all' or 'master', not '\(text)'")
    }
    return site
}

/// Applies --transport (uds, shm, auto) and --ring-bytes to client options.
func applyTransport(_ arguments: ParsedArguments, to options: inout BrokerClientOptions) throws(UsageError) {
    if let name = arguments.last("transport") {
        guard let transport = ClientTransport(rawValue: name) else {
            throw UsageError("--transport must be uds, shm or auto, not '\(name)'")
        }
        options.transport = transport
    }
    if let bytes = try arguments.integer("ring-bytes", Int.self, range: 4096...(1 << 30)) { options.ringBytes = bytes }
}

let transportHelp = """

          --transport T   uds (the Unix socket), shm (shared-memory rings; fails if the broker offers none) or
                          auto (rings when offered; the default).
          --ring-bytes N  Each ring's size to ask for (default 1048576; messages over a quarter go by the socket).
    """
