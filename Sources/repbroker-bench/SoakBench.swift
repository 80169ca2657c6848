// repbroker-bench soak: three brokers for N minutes under churn, watched for leaks.
//  - Each site has a long-lived receiver and a channel server (soak-worker receive / serve).
//  - Churn: a fixed number of short-lived clients at all times, at a random live site, on a random transport
//    (socket or shared-memory rings), each sending messages and making channel requests to another site's
//    server; one in four is killed with -9 before it is done.
//  - A fourth site joins at a third of the run; site 3 is removed at two thirds.
//  - Every `sampleSeconds`, each broker's resident memory, descriptors, threads and mappings (/proc).
// The first fifth of the run (at most 10 minutes) is a warm-up: buffers and the allocator's arenas grow to
// their working size. Then the churn pauses and the baseline is taken with only the long-lived clients. At the
// end the churn stops again; sites 1 and 2 (which run throughout) must come back to the baseline's
// descriptors, threads and file and shared-memory mappings (anonymous ones are the allocator's: a buffer of
// more than 128 KiB is a mapping of its own, and burst buffers keep up to 1 MiB), and their own resident memory
// (RssAnon + RssFile: without the clients' shared-memory rings, whose mappings the baseline check counts) must
// grow by less than 1% per 10 minutes after the warm-up: least squares over samples taken with the churn paused
// (the baseline, one a minute, the end), since a sample under churn holds whatever the clients of that instant
// have in flight.
import BrokerDaemon
import BrokerHarness
import BrokerSystem
import Foundation

struct ResourceSample: Codable {
    let seconds: Double
    /// VmRSS: everything resident, the clients' rings included.
    let residentBytes: Int
    /// The broker's own resident memory: RssAnon + RssFile, without the shared memory (RssShmem) of the rings
    /// its clients map, which comes and goes with them (the ring mappings are counted in `sharedMappings`).
    let ownBytes: Int
    let descriptors: Int
    let threads: Int
    /// Every mapping.
    let mappings: Int
    /// Mappings of a file or a shared-memory segment (clients' rings are memfds), which a leak would keep.
    /// The others are the allocator's anonymous memory, whose growth the resident memory's slope measures.
    let fileMappings: Int
    /// Of them, the shared-memory segments.
    let sharedMappings: Int
    enum CodingKeys: String, CodingKey {
        case seconds, descriptors, threads, mappings, residentBytes = "rss_bytes", sharedMappings = "shared_mappings"
        case ownBytes = "own_rss_bytes"
        case fileMappings = "file_mappings"
    }

    init(pid: Int32, seconds: Double) {
        self.seconds = seconds
        let memory = ProcessStats.residentMemory(pid)
        residentBytes = memory.total
        ownBytes = memory.anonymous + memory.file
        descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
        let status = ProcessStats.read("/proc/\(pid)/status") ?? ""
        threads = status.split(separator: "\n").first { $0.hasPrefix("Threads:") }
            .flatMap { $0.split(separator: "\t").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } } ?? -1
        let maps = (ProcessStats.read("/proc/\(pid)/maps") ?? "").split(separator: "\n")
        mappings = maps.count
        fileMappings = maps.filter { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return fields.count > 5 && !fields[5].hasPrefix("[")
        }.count
        sharedMappings = maps.filter { $0.contains("memfd:") }.count
    }

    func sameResources(as other: ResourceSample) -> Bool {
        descriptors == other.descriptors && threads == other.threads && fileMappings == other.fileMappings
            && sharedMappings == other.sharedMappings
    }
}

struct SoakBroker: Codable {
    let site: Int32
    let baseline: ResourceSample
    let end: ResourceSample
    /// The broker's own resident memory's growth after the warm-up (`ownBytes`) over the quiesced samples, in
    /// percent of its mean there per 10 minutes: the pass criterion. Samples under churn hold whatever the
    /// clients connected at that instant had in flight (a burst buffer is up to 1 MiB), so they swing by
    /// megabytes and their slope is mostly noise; with the churn paused, every sample is in the same state.
    let ownPercentPer10Minutes: Double
    /// All resident memory's growth over every sample taken under churn (for information).
    let rssPercentPer10Minutes: Double
    let returnedToBaseline: Bool
    let samples: [ResourceSample]
    /// The samples taken with the churn paused (the baseline, one every `quiescedSampleSeconds`, the end).
    let quiescedSamples: [ResourceSample]
    enum CodingKeys: String, CodingKey {
        case site, baseline, end, samples, rssPercentPer10Minutes = "rss_percent_per_10_min"
        case quiescedSamples = "quiesced_samples"
        case ownPercentPer10Minutes = "own_rss_percent_per_10_min"
        case returnedToBaseline = "returned_to_baseline"
    }
}

struct SoakResult: Codable {
    let minutes: Double
    let clientsStarted: Int
    let clientsKilled: Int
    let messagesSent: Int
    let replies: Int
    let spawnFailures: Int
    let brokers: [SoakBroker]
    let passed: Bool
    enum CodingKeys: String, CodingKey {
        case minutes, brokers, passed, replies, clientsStarted = "clients_started", clientsKilled = "clients_killed"
        case spawnFailures = "spawn_failures"
        case messagesSent = "messages_sent"
    }
}

/// Least-squares slope of `values` over `times`.
func slope(_ times: [Double], _ values: [Double]) -> Double {
    guard times.count > 1 else { return 0 }
    let meanT = times.reduce(0, +) / Double(times.count)
    let meanV = values.reduce(0, +) / Double(values.count)
    var numerator = 0.0
    var denominator = 0.0
    for (t, v) in zip(times, values) {
        numerator += (t - meanT) * (v - meanV)
        denominator += (t - meanT) * (t - meanT)
    }
    return denominator == 0 ? 0 : numerator / denominator
}

final class SoakBench {
    let minutes: Double
    let sampleSeconds: Double
    /// How often the churn pauses for a quiesced sample (the memory criterion's).
    let quiescedSampleSeconds = 60.0
    let concurrency: Int
    let log: (String) -> Void
    let sites: LocalSites
    var joined: BrokerProcess?
    var live: [BrokerProcess] = []
    var longLived: [Int32: [ChildProcess]] = [:]
    var churn: [(process: ChildProcess, killAt: UInt64?)] = []
    var random = SystemRandomNumberGenerator()
    var started = 0
    var killed = 0
    var sent = 0
    var replies = 0
    var spawnFailures = 0

    init(minutes: Double, sampleSeconds: Double, concurrency: Int, log: @escaping (String) -> Void) throws {
        self.minutes = minutes
        self.sampleSeconds = sampleSeconds
        self.concurrency = concurrency
        self.log = log
        sites = try LocalSites(count: 3, extraArguments: ["--log-level", "warning", "--heartbeat-ms", "200"],
                               program: .current("daemon"))
    }

    func worker(_ arguments: [String], at broker: BrokerProcess, transport: String = "uds") throws -> ChildProcess {
        try ChildProcess(name: "soak-\(arguments[0])", program: .current("soak-worker"),
                         arguments: arguments + ["--socket", broker.socketPath, "--transport", transport])
    }

    /// The site's receiver (socket) and channel server (rings), once both registered.
    func startLongLived(_ broker: BrokerProcess) throws {
        let workers = [try worker(["receive"], at: broker), try worker(["serve"], at: broker, transport: "shm")]
        for child in workers where !child.waitForLines(timeout: 20, { $0.contains("ready") }) {
            throw HarnessError("site \(broker.siteID): a long-lived soak client did not start")
        }
        longLived[broker.siteID] = workers
    }

    func startChurn() throws {
        let broker = live[Int.random(in: 0..<live.count, using: &random)]
        let others = live.filter { $0 !== broker }.map(\.siteID)
        let server = others[Int.random(in: 0..<others.count, using: &random)]
        // One in four is killed with -9 while it works: it is given more messages than it can send by then.
        let killAt = Int.random(in: 0..<4, using: &random) == 0
            ? Posix.monotonicNanoseconds() + UInt64(Int.random(in: 50...500, using: &random)) * 1_000_000 : nil
        let child = try worker(["churn", "--to", others.map(String.init).joined(separator: ","),
                                "--count", "\(killAt == nil ? Int.random(in: 50...2000, using: &random) : 10_000_000)",
                                "--requests", "\(Int.random(in: 0...20, using: &random))", "--server", "\(server)"],
                               at: broker, transport: Bool.random(using: &random) ? "shm" : "uds")
        churn.append((child, killAt))
        started += 1
    }

    /// Reaps finished churn clients, kills the ones due, keeps `concurrency` running.
    func churnTick() throws {
        let now = Posix.monotonicNanoseconds()
        for entry in churn where entry.process.isRunning && (entry.killAt.map { now >= $0 } ?? false) {
            entry.process.kill9()
            killed += 1
        }
        churn.removeAll { entry in
            guard !entry.process.isRunning else { return false }
            entry.process.waitForOutputEnd(timeout: 1)
            if let done = entry.process.lines.last(where: { $0.hasPrefix("done ") })?.split(separator: " "), done.count == 3 {
                sent += Int(done[1]) ?? 0
                replies += Int(done[2]) ?? 0
            }
            return true
        }
        while churn.count < concurrency {
            do { try startChurn() } catch {
                // A failed spawn (Foundation's Process has been seen to fail one in tens of thousands with
                // EBADF) is counted and tried again next tick; it says nothing about the brokers.
                spawnFailures += 1
                log("a churn client did not start: \(error)")
                break
            }
        }
    }

    func run() throws -> SoakResult {
        defer {
            for entry in churn { entry.process.kill9() }
            for workers in longLived.values { workers.forEach { $0.kill9() } }
            joined?.terminate()
            sites.shutDown()
        }
        try sites.start()
        live = sites.brokers
        for broker in live { try startLongLived(broker) }
        let watched = [sites.broker(1), sites.broker(2)]
        for broker in watched where !broker.waitForStats(timeout: 20, { $0.clients.count == 2 }) {
            throw HarnessError("site \(broker.siteID): the long-lived clients did not register")
        }
        let begin = Posix.monotonicNanoseconds()
        func elapsed() -> Double { Double(Posix.monotonicNanoseconds() - begin) / 1e9 }
        let pids = watched.map { $0.child?.pid ?? 0 }
        var samples: [[ResourceSample]] = pids.map { [ResourceSample(pid: $0, seconds: 0)] }
        let total = minutes * 60
        let warmUp = min(total * 0.2, 600)
        var baseline: [ResourceSample] = []
        var baselineMaps: [Set<String>] = []
        var nextSample = sampleSeconds
        var quiesced: [[ResourceSample]] = pids.map { _ in [] }
        var nextQuiesced = 0.0
        var didJoin = false
        var didRemove = false
        log("soak: \(Int(total)) s (warm-up \(Int(warmUp)) s), \(concurrency) churn clients at a time, a sample every "
            + "\(Int(sampleSeconds)) s")
        while elapsed() < total {
            if baseline.isEmpty && elapsed() >= warmUp {
                quiesce(watched)
                baseline = pids.map { ResourceSample(pid: $0, seconds: elapsed()) }
                baselineMaps = pids.map { Self.mappingNames($0) }
                for index in pids.indices { quiesced[index].append(baseline[index]) }
                nextQuiesced = elapsed() + quiescedSampleSeconds
                log("baseline after the warm-up: " + baseline.enumerated().map { "site \($0.offset + 1): fds "
                    + "\($0.element.descriptors) threads \($0.element.threads) maps \($0.element.mappings) "
                    + "(\($0.element.fileMappings) file, \($0.element.sharedMappings) rings)" }
                    .joined(separator: "; "))
            }
            try churnTick()
            if !didJoin && elapsed() >= total / 3 {
                didJoin = true
                try join()
            }
            if !didRemove && elapsed() >= total * 2 / 3 {
                didRemove = true
                try removeSite3()
            }
            if !baseline.isEmpty && elapsed() >= nextQuiesced && elapsed() + quiescedSampleSeconds / 2 < total {
                nextQuiesced += quiescedSampleSeconds
                quiesce(watched)
                for (index, pid) in pids.enumerated() { quiesced[index].append(ResourceSample(pid: pid, seconds: elapsed())) }
            }
            if elapsed() >= nextSample {
                nextSample += sampleSeconds
                for (index, pid) in pids.enumerated() { samples[index].append(ResourceSample(pid: pid, seconds: elapsed())) }
                let last = samples.map { $0.last! }
                log(String(format: "t=%4.0f s  clients started %d (killed %d)  ", elapsed(), started, killed)
                    + last.enumerated().map { "site \($0.offset + 1): rss \($0.element.residentBytes >> 10) KiB (own "
                        + "\($0.element.ownBytes >> 10) KiB) fds "
                        + "\($0.element.descriptors) threads \($0.element.threads) maps \($0.element.mappings) "
                    + "(\($0.element.fileMappings) file, \($0.element.sharedMappings) rings)" }
                    .joined(separator: "; "))
            }
            usleep(20_000)
        }
        // The churn stops; every broker must let go of what its clients held.
        quiesce(watched)
        var ends = pids.map { ResourceSample(pid: $0, seconds: elapsed()) }
        let returned = Deadline.wait(timeout: 30, interval: 0.2) {
            ends = pids.map { ResourceSample(pid: $0, seconds: elapsed()) }
            return zip(ends, baseline).allSatisfy { $0.sameResources(as: $1) }
        }
        for (index, pid) in pids.enumerated() where !ends[index].sameResources(as: baseline[index]) {
            let added = Self.mappingNames(pid).subtracting(baselineMaps[index])
            log("site \(watched[index].siteID): mappings not there before the churn: \(added.sorted().prefix(20))")
        }
        var brokers: [SoakBroker] = []
        for (index, site) in watched.map(\.siteID).enumerated() {
            quiesced[index].append(ends[index])
            let steady = samples[index].filter { $0.seconds >= warmUp }
            brokers.append(SoakBroker(site: site, baseline: baseline[index], end: ends[index],
                                      ownPercentPer10Minutes: Self.growthPercentPer10Minutes(quiesced[index], \.ownBytes),
                                      rssPercentPer10Minutes: Self.growthPercentPer10Minutes(steady, \.residentBytes),
                                      returnedToBaseline: ends[index].sameResources(as: baseline[index]),
                                      samples: samples[index], quiescedSamples: quiesced[index]))
        }
        let passed = returned && brokers.allSatisfy { $0.ownPercentPer10Minutes < 1 && $0.returnedToBaseline }
        return SoakResult(minutes: minutes, clientsStarted: started, clientsKilled: killed, messagesSent: sent,
                          replies: replies, spawnFailures: spawnFailures, brokers: brokers, passed: passed)
    }

    /// The least-squares slope of `bytes` over the samples, in percent of their mean per 10 minutes.
    static func growthPercentPer10Minutes(_ samples: [ResourceSample], _ bytes: KeyPath<ResourceSample, Int>) -> Double {
        let values = samples.map { Double($0[keyPath: bytes]) }
        let mean = values.reduce(0, +) / Double(max(1, values.count))
        return mean > 0 ? slope(samples.map(\.seconds), values) * 600 / mean * 100 : 0
    }

    /// Stops the churn (kill -9) and waits until the watched brokers have only their long-lived clients.
    /// A broker hands freed memory back to the system 1 s after a client leaves (malloc_trim on its tick):
    /// samples of a quiesced broker wait that long plus a margin, or they would count what it is about to free.
    static let trimSettleSeconds = 1.5

    func quiesce(_ watched: [BrokerProcess]) {
        for entry in churn { entry.process.kill9() }
        for entry in churn { entry.process.waitForOutputEnd(timeout: 1) }
        churn.removeAll()
        for broker in watched { _ = broker.waitForStats(timeout: 30) { $0.clients.count == 2 } }
        usleep(UInt32(Self.trimSettleSeconds * 1_000_000))
    }

    /// Site 4 joins through site 1, with its own long-lived clients.
    func join() throws {
        let port = FreePort.next()
        let broker = BrokerProcess(siteID: 4, port: port, directory: sites.directory.path, peers: [],
                                   extraArguments: ["--log-level", "warning", "--heartbeat-ms", "200",
                                                    "--join", "127.0.0.1:\(sites.broker(1).port)"],
                                   program: .current("daemon"))
        try broker.start()
        joined = broker
        guard broker.waitForStats(timeout: 20, { $0.peers.count == 3 && $0.peers.allSatisfy { $0.state == .connected } }) else {
            throw HarnessError("site 4 did not link to every site after joining: \(broker.log.suffix(1000))")
        }
        try startLongLived(broker)
        live.append(broker)
        log("site 4 joined")
    }

    /// Site 3 is removed from the group (through site 1) and stopped.
    func removeSite3() throws {
        let site3 = sites.broker(3)
        live.removeAll { $0 === site3 }
        for (index, entry) in churn.enumerated().reversed() where isClient(entry.process, of: site3) {
            entry.process.kill9()
            churn.remove(at: index)
        }
        _ = try AdminClient.query("remove-site 3", adminSocket: sites.broker(1).adminSocketPath)
        longLived[3]?.forEach { $0.kill9() }
        longLived[3] = nil
        site3.terminate()
        log("site 3 removed")
    }

    /// Each mapping as `size permissions name` (addresses left out), numbered when repeated.
    static func mappingNames(_ pid: Int32) -> Set<String> {
        var seen: [String: Int] = [:]
        var names = Set<String>()
        for line in (ProcessStats.read("/proc/\(pid)/maps") ?? "").split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 5 else { continue }
            let bounds = fields[0].split(separator: "-").compactMap { UInt64($0, radix: 16) }
            let size = bounds.count == 2 ? (bounds[1] - bounds[0]) >> 10 : 0
            let name = "\(size) KiB \(fields[1]) \(fields.count > 5 ? fields[5...].joined(separator: " ") : "[anon]")"
            seen[name, default: 0] += 1
            names.insert("\(name) #\(seen[name]!)")
        }
        return names
    }

    func isClient(_ process: ChildProcess, of broker: BrokerProcess) -> Bool {
        ProcessStats.read("/proc/\(process.pid)/cmdline")?.contains(broker.socketPath) ?? false
    }
}
