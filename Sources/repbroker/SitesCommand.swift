// repbroker sites / remove-site: group membership as this broker knows it.
import BrokerDaemon
import BrokerSystem
import Foundation

enum SitesCommand: Command {
    static let help = """
        USAGE: repbroker sites [--admin-socket PATH] [--json]

        Lists the group's sites as this broker knows them: site id, address, origin (configured, joined: came in
        by joining through this broker or let it join, learned: told by another member, self) and link state.
        """
    static let valuedOptions: Set<String> = ["admin-socket"]
    static let flagNames: Set<String> = ["json"]

    struct Site: Decodable { let site_id: Int32; let address: String; let origin: String; let state: String }

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        let data = try AdminClient.query("sites", adminSocket: arguments.last("admin-socket") ?? BrokerConfig.defaultAdminSocketPath)
        if arguments.has("json") {
            Console.writeOutput(String(decoding: data, as: UTF8.self))
            return 0
        }
        guard let sites = try? JSONDecoder().decode([Site].self, from: data) else {
            throw AdminClient.Failure(message: String(decoding: data.prefix(500), as: UTF8.self))
        }
        Console.writeOutput("site  address                 origin      state\n")
        for site in sites {
            Console.writeOutput("\(site.site_id)".padding(toLength: 6, withPad: " ", startingAt: 0)
                + site.address.padding(toLength: 24, withPad: " ", startingAt: 0)
                + site.origin.padding(toLength: 12, withPad: " ", startingAt: 0) + site.state + "\n")
        }
        return 0
    }
}

enum RemoveSiteCommand: Command {
    static let help = """
        USAGE: repbroker remove-site [--admin-socket PATH] ID

        Removes site ID from the group for good: this broker drops its link and tells every other member, and the
        site's HELLO is refused from then on.
        """
    static let valuedOptions: Set<String> = ["admin-socket"]
    static let flagNames: Set<String> = []

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        guard arguments.positionals.count == 1, let site = Int32(arguments.positionals[0]), site > 0 else {
            throw UsageError("give the site ID to remove")
        }
        let data = try AdminClient.query("remove-site \(site)",
                                         adminSocket: arguments.last("admin-socket") ?? BrokerConfig.defaultAdminSocketPath)
        let text = String(decoding: data, as: UTF8.self)
        guard !text.contains("\"error\"") else { throw AdminClient.Failure(message: text) }
        Console.writeOutput("site \(site) removed\n")
        return 0
    }
}
