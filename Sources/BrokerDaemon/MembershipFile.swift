// The membership file: what this broker knows of its group beyond the configured peers (sites that joined,
// addresses proved, sites removed), reloaded on start. The core says what to store (`.saveMembership`); it is
// written to a temporary file renamed over the old one, so a crash leaves the old file or the new, never half.
#if canImport(Glibc)
import Glibc
#endif
import BrokerSystem
import Foundation

struct MembershipFile {
    let path: String
    let logger: Logger

    init(config: BrokerConfig, logger: Logger) {
        let directory = config.stateDirectory
            ?? config.socketPath.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        path = (directory.isEmpty ? "." : directory) + "/membership-site\(config.siteID).json"
        self.logger = logger
    }

    /// The sites remembered from an earlier run; none when there is no file (a file that cannot be read is
    /// logged and ignored: the configured peers and --join still work).
    func load() -> [MemberRecord] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        guard let records = try? JSONDecoder().decode([MemberRecord].self, from: data) else {
            logger.warning("cannot read the membership file: ignored", ["path": path])
            return []
        }
        logger.info("membership loaded", ["path": path, "sites": "\(records.count)"])
        return records
    }

    func save(_ records: [MemberRecord]) {
        guard let data = try? JSONEncoder().encode(records) else { return }
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data), rename(temporary, path) == 0 else {
            logger.warning("cannot write the membership file", ["path": path, "reason": "\(Errno.current)"])
            return
        }
    }
}
