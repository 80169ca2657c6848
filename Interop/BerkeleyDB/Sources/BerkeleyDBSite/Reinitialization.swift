// A client that cannot sync with the master starts again from a copy of it.
//
// Berkeley DB syncs a client whose log went further than the new master's by rolling the extra records back
// with recovery. That recovery can fail for good: after a writer's kill -9 and the recovery that followed, a
// database's file id may be reused for another file before the records that used it are rolled back, and the
// rollback then finds no file for them (ENOENT on every message, and again after a restart with recovery).
// DB_REP_JOIN_FAILURE is the library's own word for the same state. Both leave the site unable to apply
// anything, so its environment is moved aside and the site starts empty: the master brings it up to date
// from its log or, when that is gone, by internal init.
//
// The trade-off: until the copy is done this site holds none of the group's transactions, so a transaction a
// quorum acknowledged with this site's help is held by one site fewer. A site in this state applies nothing,
// and the moved environment is kept for the operator.
import Foundation

enum Reinitialization {
    static func markerPath(home: String) -> String { home + "/REINITIALIZE" }

    /// Records the request in the environment's home and ends the process with exit 3. Its restart, like a
    /// restart for recovery, must come once the site's other processes have left the environment.
    static func request(home: String, reason: String) -> Never {
        complain("bdb-site: this site cannot sync with the master (\(reason)); its environment is moved aside "
            + "and copied from the master at the next start")
        _ = FileManager.default.createFile(atPath: markerPath(home: home), contents: Data((reason + "\n").utf8))
        // Other threads may be inside Berkeley DB: no exit handlers.
        _exit(3)
    }

    /// When a request is recorded: moves everything in `home` into a new directory beside it (`HOME.reinit-N`),
    /// the request included, and returns that directory.
    static func performIfRequested(home: String) throws -> String? {
        let files = FileManager.default
        guard files.fileExists(atPath: markerPath(home: home)) else { return nil }
        var number = 1
        while files.fileExists(atPath: "\(home).reinit-\(number)") { number += 1 }
        let aside = "\(home).reinit-\(number)"
        try files.createDirectory(atPath: aside, withIntermediateDirectories: false)
        for name in try files.contentsOfDirectory(atPath: home) {
            try files.moveItem(atPath: home + "/" + name, toPath: aside + "/" + name)
        }
        return aside
    }
}
