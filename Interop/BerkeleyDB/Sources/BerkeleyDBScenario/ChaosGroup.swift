// The chaos run's group: every site's broker (in a network namespace of its own when the machine permits,
// else on loopback), replication process and two writers, and the supervisor that keeps them running as an
// init system would: a dead broker is restarted, a dead replication process is restarted with recovery (its
// site's writers stopped first: recovery needs the environment to itself), a dead writer is replaced.
import BrokerHarness
import BrokerSystem
import Foundation

final class ChaosSite: @unchecked Sendable {
    let broker: BrokerProcess
    let home: String
    var replicate: ChildProcess?
    var writers: [ChildProcess?]
    var incarnations = 0
    var id: Int32 { broker.siteID }

    init(broker: BrokerProcess, home: String, writers: Int) {
        self.broker = broker
        self.home = home
        self.writers = Array(repeating: nil, count: writers)
    }

    var brokerRunning: Bool { broker.child?.isRunning == true }
    var replicateReady: Bool {
        guard let replicate, replicate.isRunning else { return false }
        return replicate.lines.contains("ready site=\(id)")
    }

    /// Whether the replication process last said this site is master.
    var saysMaster: Bool {
        guard let replicate, replicate.isRunning else { return false }
        return lastSaidMaster(replicate.lines, site: id)
    }
}

/// What the writers reported: acknowledged keys and when, and how many commits were not acknowledged.
struct ChaosCommits {
    var acked = Set<String>()
    /// (CLOCK_MONOTONIC ns, site) of every acknowledged commit.
    var ackTimes: [(UInt64, Int32)] = []
    /// When each key's commit was acknowledged (CLOCK_MONOTONIC ns).
    var ackedAt: [String: UInt64] = [:]
    var unacked = 0
    var failed = 0

    mutating func take(_ lines: [String], site: Int32) {
        for line in lines {
            let words = line.split(separator: " ")
            guard words.count >= 3 else { continue }
            switch words[0] {
            case "acked":
                acked.insert(String(words[1]))
                if let time = UInt64(words[2]) {
                    ackTimes.append((time, site))
                    ackedAt[String(words[1])] = time
                }
            case "unacked": unacked += 1
            case "failed": failed += 1
            default: break
            }
        }
    }
}

final class ChaosGroup: @unchecked Sendable {
    let options: ChaosOptions
    let log: (String) -> Void
    let directory: TemporaryDirectory
    /// The brokers' TLS certificates (with ChaosOptions.tls), kept for the run.
    let certificates: TestCertificates?
    let hosts: NetworkNamespaces?
    var sites: [ChaosSite] = []
    var commits = ChaosCommits()
    /// Processes that died without a fault's doing, by kind (a replication process after a Berkeley DB panic).
    var unplannedExits: [String: Int] = [:]
    /// Replication processes that ended asking for their site to start again from a copy of the master.
    var reinitializations = 0
    /// While the group is checked, stopped writers stay stopped.
    var writersPaused = false
    static let namespacePort: UInt16 = 7001

    init(options: ChaosOptions, log: @escaping (String) -> Void) throws {
        self.options = options
        self.log = log
        directory = try TemporaryDirectory(prefix: "rbchaos")
        let ids = (1...options.sites).map { Int32($0) }
        // With TLS, each broker also has a certificate naming its site, and the group's CA.
        certificates = options.tls ? try TestCertificates.group(sites: ids) : nil
        if options.namespaces {
            hosts = try NetworkNamespaces(sites: ids)
        } else {
            hosts = nil
        }
        let ports = ids.map { _ in hosts == nil ? FreePort.next() : Self.namespacePort }
        // Brokers on a network prove a shared group key to each other.
        let keyFile = directory.path + "/group.key"
        try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: keyFile))
        let common = ["--heartbeat-ms", "\(options.heartbeatMilliseconds)", "--group-key-file", keyFile]
        for (index, id) in ids.enumerated() {
            let arguments = common + (certificates?.brokerArguments("site\(id)") ?? [])
            let peers = ids.enumerated().filter { $0.element != id }.map { ($0.element, ports[$0.offset]) }
            let broker: BrokerProcess
            let program = options.upgradeFrom ?? options.broker
            if let hosts {
                broker = BrokerProcess(siteID: id, port: ports[index], directory: directory.path, peers: peers,
                                       extraArguments: arguments, program: hosts.program(program, in: id))
                broker.listenAddress = "0.0.0.0:\(Self.namespacePort)"
                broker.peerHost = { hosts.address($0) }
            } else {
                broker = BrokerProcess(siteID: id, port: ports[index], directory: directory.path, peers: peers,
                                       extraArguments: arguments, program: program)
            }
            let home = directory.path + "/home\(id)"
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            sites.append(ChaosSite(broker: broker, home: home, writers: options.writersPerSite))
        }
    }

    func site(_ id: Int32) -> ChaosSite { sites[Int(id) - 1] }

    // MARK: processes

    func startReplication(_ site: ChaosSite, asMaster: Bool) throws {
        var arguments = ["--home", site.home, "--socket", site.broker.socketPath, "--site-id", "\(site.id)",
                         "--nsites", "\(options.sites)", "--priority", "\(100 - Int(site.id))", "--ack-policy", "quorum"]
        if asMaster { arguments.append("--master") }
        site.replicate = try ChildProcess(name: "replicate-\(site.id)", program: try SiteAgent.program(), arguments: arguments,
                                          stderrPath: directory.path + "/replicate\(site.id).err")
    }

    func startWriter(_ site: ChaosSite, _ index: Int) throws {
        site.incarnations += 1
        let prefix = "s\(site.id)w\(index)i\(site.incarnations)"
        site.writers[index] = try ChildProcess(
            name: "write-\(prefix)", program: options.site,
            arguments: ["chaos-write", "--home", site.home, "--socket", site.broker.socketPath, "--prefix", prefix,
                        "--ack-policy", "quorum", "--pause-ms", "\(options.pauseMilliseconds)"],
            stderrPath: directory.path + "/write-\(site.id)-\(index).err")
    }

    /// Takes a writer's report once it has exited (or been killed).
    func harvest(_ site: ChaosSite, _ index: Int) {
        guard let writer = site.writers[index] else { return }
        writer.waitForOutputEnd(timeout: 5)
        commits.take(writer.lines, site: site.id)
        site.writers[index] = nil
    }

    func killWriters(_ site: ChaosSite) {
        for index in site.writers.indices {
            site.writers[index]?.kill9()
            harvest(site, index)
        }
    }

    /// Starts every broker, site 1 as master, the others as clients until synced, then every writer.
    func start() throws {
        for site in sites { try site.broker.start() }
        for site in sites where !site.broker.waitForPeers(timeout: 30) {
            throw ScenarioFailure("site \(site.id) did not link to every peer: \(site.broker.log.suffix(1500))")
        }
        try startReplication(sites[0], asMaster: true)
        guard Deadline.wait(timeout: 60, interval: 0.05, { sites[0].saysMaster }) else {
            throw ScenarioFailure("site 1 did not become master")
        }
        for site in sites.dropFirst() { try startReplication(site, asMaster: false) }
        for site in sites.dropFirst() where !Deadline.wait(timeout: 60, interval: 0.05, {
            site.replicate?.lines.contains("startupdone") == true
        }) {
            throw ScenarioFailure("site \(site.id) did not sync")
        }
        for site in sites { for index in site.writers.indices { try startWriter(site, index) } }
    }

    /// Keeps every process running that should run. `brokerHeld` names sites whose broker is down on purpose.
    func supervise(brokerHeld: Set<Int32>) {
        for site in sites {
            if !site.brokerRunning {
                guard !brokerHeld.contains(site.id) else { continue }
                unplannedExits["broker", default: 0] += 1
                log("site \(site.id): broker exited by itself: \(site.broker.log.suffix(600))")
                try? site.broker.start()
                continue
            }
            if let replicate = site.replicate, !replicate.isRunning {
                keepOutput(of: replicate, site: site)
                if replicate.process.terminationReason != .uncaughtSignal {
                    unplannedExits["replication", default: 0] += 1
                    // Exit 3: the site could not sync and asked to start again from a copy of the master.
                    if replicate.process.terminationStatus == 3 {
                        reinitializations += 1
                        log("site \(site.id): the replication process asked to be re-initialized")
                    }
                }
                site.replicate = nil
            }
            if site.replicate == nil {
                // Recovery needs the environment to itself: the site's writers stop first.
                killWriters(site)
                try? startReplication(site, asMaster: false)
                continue
            }
            guard site.replicateReady, !writersPaused else { continue }
            for index in site.writers.indices where site.writers[index]?.isRunning != true {
                if let writer = site.writers[index], writer.process.terminationReason != .uncaughtSignal {
                    unplannedExits["writer", default: 0] += 1
                }
                harvest(site, index)
                try? startWriter(site, index)
            }
        }
    }

    /// Moves site `id`'s broker: stopped, given another address (another IP on the bridge, or another port on
    /// loopback), started again advertising it.
    func move(_ site: ChaosSite) throws {
        site.broker.terminate()
        if let hosts {
            let address = hosts.movedAddress(site.id)
            try hosts.setAddress(site.id, address)
            site.broker.extraArguments += ["--advertise", "\(address):\(Self.namespacePort)"]
        } else {
            site.broker.listenAddress = "127.0.0.1:\(FreePort.next())"
        }
        try site.broker.start()
    }

    // MARK: the end

    /// Stops every writer (SIGTERM: each ends its transaction and exits) and takes their reports.
    func stopWriters() {
        for site in sites {
            for writer in site.writers.compactMap({ $0 }) { writer.signal(SIGTERM) }
        }
        for site in sites {
            for index in site.writers.indices {
                if site.writers[index]?.waitForExit(timeout: 10) == nil { site.writers[index]?.kill9() }
                harvest(site, index)
            }
        }
    }

    func run(_ arguments: [String]) -> [String]? { ChildProcess.outputLines(of: options.site, arguments, timeout: 60) }

    func dump(_ site: ChaosSite) -> [String]? { run(["dump", "--home", site.home]) }
    func role(_ site: ChaosSite) -> String? { run(["role", "--home", site.home])?.first }

    /// Appends a replication process's output to replicate<ID>.out in the run's directory (every incarnation's,
    /// for a failure's report).
    func keepOutput(of replicate: ChildProcess, site: ChaosSite) {
        replicate.waitForOutputEnd(timeout: 1)
        let path = directory.path + "/replicate\(site.id).out"
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        defer { try? handle.close() }
        _ = try? handle.seekToEnd()
        try? handle.write(contentsOf: Data(("---- pid \(replicate.pid)\n" + replicate.lines.joined(separator: "\n") + "\n").utf8))
    }

    /// Processes of the group and the end of their logs, for a failure's report; every replication process's
    /// output is kept beside its stderr (replicate<ID>.out).
    func diagnostics() -> String {
        for site in sites { if let replicate = site.replicate { keepOutput(of: replicate, site: site) } }
        return sites.map { site in
            let replicate = (try? String(contentsOfFile: directory.path + "/replicate\(site.id).err", encoding: .utf8)) ?? ""
            return "---- site \(site.id): broker running \(site.brokerRunning), replication running "
                + "\(site.replicate?.isRunning == true)\nbroker log: \(site.broker.log.suffix(1500))\n"
                + "replication stderr: \(replicate.suffix(1500))\nreplication output: "
                + "\(site.replicate?.lines.suffix(20).joined(separator: " | ") ?? "-")"
        }.joined(separator: "\n")
    }

    func shutDown(keepDirectory: Bool) {
        for site in sites {
            for writer in site.writers.compactMap({ $0 }) { writer.kill9() }
            site.replicate?.kill9()
            site.broker.child?.signal(SIGCONT)
            site.broker.terminate()
        }
        hosts?.remove()
        if !keepDirectory { directory.remove() }
    }
}
