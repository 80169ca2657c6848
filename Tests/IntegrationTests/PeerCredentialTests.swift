// Local clients are checked with SO_PEERCRED against the broker's allow lists: a user not on them is refused
// with a reason and counted; the broker's own user and listed users are served; the sockets take the
// configured group.
import BrokerDaemon
import BrokerHarness
import Foundation
import Testing

@Suite struct PeerCredentialTests {
    /// Runs `repbroker` as the nobody user (uid and gid 65534) with `arguments`.
    func runAsNobody(_ directory: String, _ arguments: [String]) throws -> (status: Int32?, output: String) {
        // A copy the nobody user can reach whatever the checkout's permissions.
        let program = directory + "/repbroker-copy"
        if !FileManager.default.fileExists(atPath: program) {
            try FileManager.default.copyItem(atPath: Executables.path("repbroker"), toPath: program)
            chmod(program, 0o755)
        }
        let child = try ChildProcess(name: "nobody", executable: "/usr/bin/setpriv",
                                     arguments: ["--reuid", "65534", "--regid", "65534", "--clear-groups", program] + arguments,
                                     stderrPath: directory + "/nobody.err")
        let status = child.waitForExit(timeout: 20)
        let stderr = (try? String(contentsOfFile: directory + "/nobody.err", encoding: .utf8)) ?? ""
        return (status, stderr)
    }

    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func clientsOutsideTheAllowListAreRefused() throws {
        for (allowed, expected) in [("4242", Int32(1)), ("65534", 0)] {
            try withSites(1, extraArguments: ["--socket-mode", "666", "--socket-group", "65534", "--allow-uid", allowed]) { sites in
                let broker = sites.broker(1)
                chmod(sites.directory.path, 0o755)
                let info = try FileManager.default.attributesOfItem(atPath: broker.socketPath)
                #expect((info[.groupOwnerAccountID] as? Int) == 65534)
                let (status, output) = try runAsNobody(sites.directory.path, ["send", "--socket", broker.socketPath,
                                                                              "--to", "1", "--transport", "uds", "hi"])
                #expect(status == expected, "allow-uid \(allowed): \(output)")
                let stats = try broker.stats()
                if expected == 1 {
                    #expect(output.contains("not allowed"))
                    #expect(stats.totals.clientsRefused == 1)
                } else {
                    #expect(stats.totals.clientsRefused == 0)
                }
                // The broker's own user is always served.
                let own = try client(broker, name: "own-user")
                try own.send(control: [], rec: [1], to: 1)
            }
        }
    }
}
