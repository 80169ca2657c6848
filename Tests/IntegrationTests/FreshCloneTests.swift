// `swift run repbroker demo` on a fresh clone builds only the repbroker product: the demo must need no other
// program. The test runs a copy of repbroker alone in an empty directory, as that build leaves it.
import BrokerHarness
import Foundation
import Testing

@Suite struct FreshCloneTests {
    @Test func theDemoRunsWithTheRepbrokerExecutableAlone() throws {
        let directory = try TemporaryDirectory(prefix: "rbalone")
        defer { directory.remove() }
        let alone = directory.path + "/repbroker"
        try FileManager.default.copyItem(atPath: Executables.path("repbroker"), toPath: alone)
        let demo = try ChildProcess(name: "demo", executable: alone, arguments: ["demo", "--messages", "50"],
                                    stderrPath: directory.path + "/stderr")
        let status = demo.waitForExit(timeout: 120)
        if status == nil { demo.kill9() }
        demo.waitForOutputEnd(timeout: 5)
        let stderr = (try? String(contentsOfFile: directory.path + "/stderr", encoding: .utf8)) ?? ""
        #expect(status == 0, "demo failed: \(stderr.suffix(1000))")
        #expect(demo.lines.contains { $0.contains("messages delivered") && $0.hasSuffix("OK") }, "\(demo.lines.suffix(5))")
    }

    @Test func repbrokerDaemonIsTheBroker() throws {
        let (status, output) = try runToExit("repbroker", ["daemon", "--help"])
        #expect(status == 0)
        #expect(output.contains("--site-id N"))
    }
}
