// The C programs the scenarios run, built once per process into a temporary directory with the scripts a user
// runs: librepbroker (scripts/build-c-client) and the site agent, librepbroker-bdb and repbroker-site
// (scripts/build-bdb-agent), then the C writer (Interop/BerkeleyDB/c/bdb_c_writer.c) on them and libdb 5.3.
import BrokerHarness
import Foundation

public enum CPrograms {
    static let interop = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    nonisolated(unsafe) private static var built: String?
    private static let lock = NSLock()

    /// The directory the programs are in (built on first use).
    static func directory() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let built { return built }
        let directory = try TemporaryDirectory(prefix: "rbcprograms")
        let root = interop.appendingPathComponent("repbroker").path
        let prefix = directory.path + "/c-client"
        let script = "\(root)/scripts/build-bdb-agent \(prefix) && cc -std=c11 -O2 -Wall -Wextra -Werror "
            + "-I\(prefix)/include \(interop.path)/c/bdb_c_writer.c \(prefix)/lib/librepbroker-bdb.a "
            + "\(prefix)/lib/librepbroker.a -ldb-5.3 -pthread -o \(directory.path)/bdb_c_writer"
            + " && cc -std=c11 -O1 -g -Wall -Wextra -Werror -I\(prefix)/include -I\(root)/ipc/bdb "
            + "\(root)/ipc/bdb/tests/agent_check.c \(prefix)/lib/librepbroker-bdb.a \(prefix)/lib/librepbroker.a "
            + "-ldb-5.3 -pthread -o \(directory.path)/agent_check"
            + " && cc -std=c11 -O2 -Wall -Wextra -Werror \(root)/ipc/bdb/examples/kvstore.c -o \(directory.path)/kvstore "
            + "$(PKG_CONFIG_PATH=\(prefix)/lib/pkgconfig pkg-config --cflags --libs repbroker-bdb) -Wl,-rpath,\(prefix)/lib"
        let compiler = try ChildProcess(name: "cc", executable: "/bin/sh", arguments: ["-c", script],
                                        stderrPath: directory.path + "/cc.err")
        let status = compiler.waitForExit(timeout: 180)
        guard status == 0, FileManager.default.fileExists(atPath: directory.path + "/bdb_c_writer") else {
            if status == nil { compiler.kill9() }
            let why = (try? String(contentsOfFile: directory.path + "/cc.err", encoding: .utf8)) ?? ""
            let how = status.map { "exit status \($0)" } ?? "not done in 180 s"
            throw ScenarioFailure("cannot build the C programs (\(how)): \(why.suffix(1500))")
        }
        built = directory.path
        return directory.path
    }
}

/// The C writer: a writer process on librepbroker-bdb.
public enum CWriter {
    static var interop: URL { CPrograms.interop }

    public static func build() throws -> String { try CPrograms.directory() + "/bdb_c_writer" }

    /// The shared librepbroker built with the writer at `program`.
    public static func library(beside program: String) -> String {
        URL(fileURLWithPath: program).deletingLastPathComponent().path + "/c-client/lib/librepbroker.so"
    }
}

/// repbroker-site: the site's replication process on librepbroker-bdb.
public enum SiteAgent {
    public static func program() throws -> Program {
        Program(executable: try CPrograms.directory() + "/c-client/bin/repbroker-site")
    }
}

extension SiteAgent {
    /// ipc/bdb/tests/agent_check: the agent's policy checks, bad starts, and writers for the group tests.
    public static func check() throws -> String { try CPrograms.directory() + "/agent_check" }

    /// ipc/bdb/examples/kvstore: the README's migration example, built as its comment says (pkg-config).
    public static func example() throws -> String { try CPrograms.directory() + "/kvstore" }
}
