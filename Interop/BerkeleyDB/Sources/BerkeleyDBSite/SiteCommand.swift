// bdb-site's whole program as a library function, so that bdb-scenario can run it as `bdb-scenario site ...`
// (`swift run bdb-scenario` builds only that product).
import Foundation
import RepBrokerClient

public enum SiteCommand {
    public static let help = """
    USAGE:
      bdb-site replicate --transport repmgr --home DIR --repmgr-port P [--helper-port H] [--master] [--priority P]
                         [--no-bulk] [--writer-threads K --count N [--value-size BYTES]]   (benchmark writers as threads)
      bdb-site write     --home DIR --socket PATH --count N [--prefix TEXT] [--value-size BYTES]
                         [--ack-policy none|one|quorum|all] [--ack-timeout SECONDS] [--group NAME]
      bdb-site write     --transport repmgr --home DIR --repmgr-port P --count N [--prefix TEXT] [--value-size BYTES]
      bdb-site write     ... [--warm-up] [--wait-for-go]   (benchmark: one warm-up commit, `warm`, then wait for `go`)
      bdb-site write     --transport local --home DIR --count N ...   (replication off: the benchmark's ceiling)
      bdb-site local-env --home DIR   (makes an environment without replication for `write --transport local`)
      bdb-site dump      --home DIR
      bdb-site role      --home DIR
      bdb-site records   --home DIR
      bdb-site chaos-write --home DIR --socket PATH --prefix TEXT [--ack-policy none|one|quorum|all]
                         [--ack-timeout SECONDS] [--pause-ms 20]
      bdb-site serve-writes --home DIR --socket PATH [--ack-policy none|one|quorum|all]
      bdb-site put       --socket PATH [--timeout SECONDS] KEY VALUE

    replicate  With --transport repmgr: a site's Replication Manager process (the benchmark's baseline). Over
               repbroker the site's replication process is repbroker-site (librepbroker-bdb).
    write      One of several writer processes: joins the environment and, when the site is master, commits
               N transactions of one put each (keys PREFIX-000000 ...). Exit 3 when the site is not master.
    dump       Prints the database's key=value pairs sorted by key.
    role       Prints the environment's replication role: master, client or none.
    records    Prints `requested N duplicated M`: log records this client missed and asked for again, and
               received twice (rep_stat), since the environment was made.
    chaos-write  Runs until SIGTERM: whenever the site is master, commits one put per transaction (a new key
               PREFIX-SEQ each time) and prints `acked KEY T`, `unacked KEY T` or `failed KEY T CODE` (T: the
               CLOCK_MONOTONIC nanoseconds at its end). Exit 4 on DB_RUNRECOVERY.
    serve-writes  Run at every site: commits puts forwarded on channel "writes" while the site is master and
               answers after the commit.
    put        Forwards one put from any site to the master and waits until it is committed there. Exit 2
               with the reason when it was not (no master, master changed, no answer): retry.
    """

    /// Runs one bdb-site command (`words` without the program name) and exits.
    public static func run(_ words: [String]) -> Never {
        guard let command = words.first, !["--help", "-h"].contains(command) else {
            say(SiteCommand.help)
            exit(words.isEmpty ? 64 : 0)
        }
        do {
            switch command {
            case "replicate" where value("transport", in: words) == "repmgr":
                var options = RepmgrOptions(home: required("home", in: words), port: UInt16(integer("repmgr-port", in: words)))
                options.helperPort = value("helper-port", in: words).flatMap(UInt16.init)
                options.createsGroup = words.contains("--master")
                options.priority = UInt32(value("priority", in: words).flatMap(UInt32.init) ?? 100)
                options.benchThreads = value("writer-threads", in: words).flatMap(Int.init) ?? 0
                options.benchCount = value("count", in: words).flatMap(Int.init) ?? 0
                options.valueSize = value("value-size", in: words).flatMap(Int.init) ?? 100
                options.bulk = !words.contains("--no-bulk")
                try runRepmgrReplication(options)
            case "replicate":
                complain("bdb-site: the site's replication process is repbroker-site (librepbroker-bdb): "
                    + "scripts/build-bdb-agent builds it")
                exit(64)
            case "write":
                let repmgr = value("transport", in: words) == "repmgr"
                let local = value("transport", in: words) == "local"
                var options = WriteOptions(home: required("home", in: words),
                                           socketPath: repmgr || local ? "" : required("socket", in: words),
                                           count: integer("count", in: words),
                                           prefix: value("prefix", in: words) ?? "w\(getpid())")
                options.valueSize = value("value-size", in: words).flatMap(Int.init) ?? 100
                options.ackPolicy = policy(in: words)
                options.ackTimeout = value("ack-timeout", in: words).flatMap(Double.init) ?? 1
                if repmgr { options.repmgrPort = UInt16(integer("repmgr-port", in: words)) }
                options.local = local
                options.warmUp = words.contains("--warm-up")
                options.waitForGo = words.contains("--wait-for-go")
                if let group = value("group", in: words) { options.group = group }
                let summary = try runWriter(options)
                say(try summary.jsonLine())
            case "serve-writes":
                try serveWrites(home: required("home", in: words), socketPath: required("socket", in: words),
                                ackPolicy: policy(in: words))
            case "put":
                var positionals: [String] = []
                var index = 1
                while index < words.count {
                    if words[index].hasPrefix("--") { index += 2 } else { positionals.append(words[index]); index += 1 }
                }
                guard positionals.count == 2 else {
                    complain("bdb-site put: give KEY and VALUE")
                    exit(64)
                }
                do {
                    try forwardPut(socketPath: required("socket", in: words), key: positionals[0], value: positionals[1],
                                   timeout: value("timeout", in: words).flatMap(Double.init) ?? 5)
                    say("committed \(positionals[0])")
                } catch let outcome as PutOutcome {
                    complain("bdb-site put: \(outcome)")
                    exit(2)
                }
            case "chaos-write":
                var options = ChaosWriteOptions(home: required("home", in: words), socketPath: required("socket", in: words),
                                                prefix: required("prefix", in: words))
                options.ackPolicy = policy(in: words)
                options.ackTimeout = value("ack-timeout", in: words).flatMap(Double.init) ?? 1
                options.pauseMilliseconds = value("pause-ms", in: words).flatMap(Int.init) ?? 20
                try runChaosWriter(options)
            case "local-env":
                try makeLocalEnvironment(home: required("home", in: words))
            case "role":
                say(try replicationRole(home: required("home", in: words)))
            case "dump":
                for line in try dump(home: required("home", in: words)) { say(line) }
            case "records":
                let counters = try recordCounters(home: required("home", in: words))
                say("requested \(counters.requested) duplicated \(counters.duplicated)")
            default:
                complain("bdb-site: unknown command '\(command)'\n\(SiteCommand.help)")
                exit(64)
            }
        } catch WriteError.notMaster {
            complain("bdb-site: \(WriteError.notMaster)")
            exit(3)
        } catch {
            complain("bdb-site: \(error)")
            exit(1)
        }
        exit(0)
    }
}

fileprivate func value(_ name: String, in words: [String]) -> String? {
    guard let index = words.firstIndex(of: "--\(name)"), index + 1 < words.count else { return nil }
    return words[index + 1]
}

fileprivate func required(_ name: String, in words: [String]) -> String {
    guard let text = value(name, in: words) else {
        complain("bdb-site: --\(name) is required\n\(SiteCommand.help)")
        exit(64)
    }
    return text
}

fileprivate func integer(_ name: String, in words: [String]) -> Int {
    guard let number = Int(required(name, in: words)) else {
        complain("bdb-site: --\(name) needs an integer")
        exit(64)
    }
    return number
}

fileprivate func policy(in words: [String]) -> AckPolicy {
    guard let name = value("ack-policy", in: words) else { return .quorum }
    guard let policy = AckPolicy(name: name) else {
        complain("bdb-site: --ack-policy must be none, one, quorum or all")
        exit(64)
    }
    return policy
}

