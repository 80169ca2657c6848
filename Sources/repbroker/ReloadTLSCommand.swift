// repbroker reload-tls: the broker reads its TLS certificate, key and CA again (as on SIGHUP).
import BrokerDaemon
import BrokerSystem
import Foundation

enum ReloadTLSCommand: Command {
    static let help = """
        USAGE: repbroker reload-tls [--admin-socket PATH]

        Makes the broker read its --tls-cert, --tls-key and --tls-ca files again (as SIGHUP does). Links that are
        up keep their sessions; new connections use the new files. When the files cannot be loaded the broker
        keeps the ones in use, and this command says why and exits 1.
        """
    static let valuedOptions: Set<String> = ["admin-socket"]
    static let flagNames: Set<String> = []

    static func run(_ arguments: ParsedArguments) throws -> Int32 {
        guard arguments.positionals.isEmpty else { throw UsageError("reload-tls takes no arguments") }
        let data = try AdminClient.query("reload-tls",
                                         adminSocket: arguments.last("admin-socket") ?? BrokerConfig.defaultAdminSocketPath)
        struct Answer: Decodable { let reloaded: String?; let error: String? }
        guard let answer = try? JSONDecoder().decode(Answer.self, from: data), let certificate = answer.reloaded else {
            let reason = (try? JSONDecoder().decode(Answer.self, from: data))?.error
                ?? String(decoding: data.prefix(500), as: UTF8.self)
            throw AdminClient.Failure(message: "reload-tls: \(TerminalText.escaped(reason))")
        }
        Console.writeOutput("TLS reloaded: new peer connections use \(TerminalText.escaped(certificate))\n")
        return 0
    }
}
