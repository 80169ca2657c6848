// bdb-site refuses bad states with a clear message and a non-zero exit, never a hang: writing at a client
// site, an environment that does not exist, a broker that is not running.
import BerkeleyDBScenario
import BrokerHarness
import Foundation
import Testing

func runSite(_ arguments: [String], in directory: String) throws -> (status: Int32?, stderr: String) {
    let child = try ChildProcess(name: "bdb-site", executable: Executables.path("bdb-site"), arguments: arguments,
                                 stderrPath: directory + "/stderr")
    let status = child.waitForExit(timeout: 30)
    if status == nil { child.kill9() }
    return (status, (try? String(contentsOfFile: directory + "/stderr", encoding: .utf8)) ?? "")
}

@Suite struct SiteCommandTests {
    @Test func writingAtAClientSiteIsRefused() throws {
        let sites = try LocalSites(count: 2, program: .named("bdb-brokerd"))
        defer { sites.shutDown() }
        try sites.start()
        let homes = sites.brokers.map { $0.directory + "/home\($0.siteID)" }
        var replicas: [ChildProcess] = []
        defer { replicas.forEach { $0.kill9() } }
        for (index, broker) in sites.brokers.enumerated() {
            try FileManager.default.createDirectory(atPath: homes[index], withIntermediateDirectories: true)
            var arguments = ["--home", homes[index], "--socket", broker.socketPath,
                             "--site-id", "\(broker.siteID)", "--nsites", "2"]
            if index == 0 { arguments.append("--master") }
            replicas.append(try ChildProcess(name: "replicate", program: try SiteAgent.program(), arguments: arguments,
                                             stderrPath: broker.directory + "/r\(index).err"))
        }
        #expect(replicas[1].waitForLines(timeout: 30) { $0.contains("startupdone") })
        let (status, stderr) = try runSite(["write", "--home", homes[1], "--socket", sites.broker(2).socketPath,
                                            "--count", "1"], in: sites.directory.path)
        #expect(status == 3)
        #expect(stderr.contains("not the master"))
    }

    @Test func aMissingEnvironmentOrBrokerIsAClearError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let sites = try LocalSites(count: 1, program: .named("bdb-brokerd"))
        defer { sites.shutDown() }
        try sites.start()
        let missing = try runSite(["write", "--home", directory.path + "/nowhere", "--socket", sites.broker(1).socketPath,
                                   "--count", "1"], in: directory.path)
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("no environment"))
        let noBroker = try runSite(["write", "--home", directory.path, "--socket", directory.path + "/no.sock",
                                    "--count", "1"], in: directory.path)
        #expect(noBroker.status == 1)
        #expect(noBroker.stderr.contains("broker unavailable"))
        let dumpMissing = try runSite(["dump", "--home", directory.path + "/nowhere"], in: directory.path)
        #expect(dumpMissing.status == 1)
        let recordsMissing = try runSite(["records", "--home", directory.path + "/nowhere"], in: directory.path)
        #expect(recordsMissing.status == 1)
        #expect(recordsMissing.stderr.contains("no environment"))
    }
}
