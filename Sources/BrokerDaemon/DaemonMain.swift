// repbrokerd's whole program as a library function, so that any package can build a broker executable
// (the root one, and the Berkeley DB interop package's own) with a one-line main.
import BrokerSystem
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

public enum DaemonMain {
    /// Parses `arguments` (without the program name), runs the broker until SIGTERM or SIGINT, and exits:
    /// 0 after a clean stop, 1 on failure, 64 on usage errors.
    public static func run(_ words: [String]) -> Never {
        if words.contains("--help") || words.contains("-h") {
            Console.writeOutput(help + "\n")
            exit(0)
        }
        let config: BrokerConfig
        do {
            let arguments = try ParsedArguments(words, valued: BrokerConfig.valuedOptions, flagNames: BrokerConfig.flagNames)
            guard arguments.positionals.isEmpty else {
                throw UsageError("unexpected argument '\(arguments.positionals[0])'")
            }
            var parsed = try BrokerConfig.from(arguments: arguments)
            parsed.exitWithParent = arguments.has("exit-with-parent")
            config = parsed
        } catch let error as UsageError {
            exitWithUsage(error, tool: "repbrokerd")
        } catch {
            exitWithFailure("\(error)", tool: "repbrokerd")
        }

        /// A failure once running: a log line in the configured format, then exit 1.
        func fail(_ reason: String) -> Never {
            if config.logFormat == .json {
                Logger(label: "repbrokerd", level: .error, format: .json).error(reason)
                exit(1)
            }
            exitWithFailure(reason, tool: "repbrokerd")
        }

        signal(SIGPIPE, SIG_IGN)
        Posix.raiseDescriptorLimit()
        let broker: Broker
        do {
            broker = try Broker(config: config)
            try broker.start()
        } catch let error as ConfigError {
            exitWithUsage(UsageError("\(error)"), tool: "repbrokerd")
        } catch {
            fail("\(error)")
        }
        let signalSources = installStopSignals(broker.stopper) + [installReloadSignal(broker.stopper)]
        do {
            try broker.run()
        } catch let failure as Broker.BrokerFailure {
            fail(failure.reason)
        } catch {
            broker.removeSocketFilesOnFailure()
            fail("event loop failed: \(error)")
        }
        withExtendedLifetime(signalSources) {}
        exit(0)
    }

    /// SIGTERM and SIGINT stop the broker; the handlers run on a Dispatch queue.
    static func installStopSignals(_ stopper: Broker.Stopper) -> [DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { @Sendable in stopper.requestStop() }
            source.resume()
            return source
        }
    }

    /// SIGHUP reloads the TLS certificates.
    static func installReloadSignal(_ stopper: Broker.Stopper) -> DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { @Sendable in stopper.requestTLSReload() }
        source.resume()
        return source
    }

    static let help = """
        repbrokerd: the per-host communications broker for Berkeley DB replication groups.

        USAGE: repbrokerd --site-id N [--listen HOST:PORT] [--peer ID=HOST:PORT]... [--socket PATH]
                          [--admin-socket PATH] [--config FILE] [--log-level trace|debug|info|warning|error]
                          [--log-format text|json]

        OPTIONS:
          --site-id N              This site's id: a positive 32-bit integer, unique in the group, used as
                                   the Berkeley DB environment id (EID) of this site.
          --listen HOST:PORT       Where peer brokers connect. Without it the broker only dials its peers.
          --advertise HOST:PORT    The address other sites dial to reach this one (never a wildcard). Default:
                                   the --listen address when it names a host; with a wildcard --listen
                                   (0.0.0.0 or [::]), the local address of this broker's first peer connection.
          --insecure               Allow a --listen address other sites can reach without --group-key-file.
                                   Without a key, anything that reaches the port can claim to be a site.
          --peer ID=HOST:PORT      A peer site and its advertised address (repeatable). Host names are resolved
                                   off the event loop and again every 30 s; one that does not resolve is shown
                                   as 'unresolved' in stats and retried.
          --metrics-listen HOST:PORT
                                   Serve the stats to Prometheus: GET /metrics over plain HTTP (text format
                                   0.0.4, as `repbroker stats --prometheus` prints). Anyone who reaches the port
                                   can read the counters and the group and client names: bind it to loopback
                                   or a management network.
          --socket PATH            Local client socket (default: \(BrokerConfig.defaultSocketPath)).
          --admin-socket PATH      Admin socket for `repbroker stats` (default: \(BrokerConfig.defaultAdminSocketPath)).
          --config FILE            JSON file with the same settings in snake_case (site_id, listen, peers:
                                   [{"site_id":2,"address":"host:port"}], socket, admin_socket, log_level,
                                   heartbeat_ms, ...). Flags override it.
          --log-level LEVEL        trace, debug, info (default), warning or error. Logs go to stderr.
          --log-format text|json   text (default: time level label: message key=value ...) or one JSON object
                                   per line with the same fields (time, level, label, message, then each key).
          --heartbeat-ms N         Peer heartbeat interval (default 1000); a link silent for 3 intervals is down.
          --peer-queue-bytes N     Per-peer outbound queue limit (default 67108864). When full, a message
                                   without PERMANENT is dropped and counted; a PERMANENT one is refused.
          --flow-window-bytes N    Bytes each peer may send per group and traffic class before this broker
                                   returns credit (default 524288, at least 65536). Credit returns as that
                                   group's receiver drains, so a slow receiver holds back its own group only.
          --max-message-bytes N    Largest control + rec of one message (default 67108864).
          --inbound-queue-bytes N  Per-group queue for messages waiting for a receiver (default 4194304).
          --client-queue-bytes N   Per-client delivery queue limit (default 67108864).
          --socket-mode OCTAL      Mode of both Unix sockets (default 660).
          --socket-group GROUP     Group (name or gid) that owns both Unix sockets.
          --allow-uid UID          Allow local clients of this uid (repeatable; checked with SO_PEERCRED). With
          --allow-gid GID          any allow list set, clients of other users are refused; the broker's own uid
                                   is always allowed.
          --max-clients N          Most local clients at once; one more is refused with ERROR client_limit.
                                   Default: (descriptor limit - 256) / 4, at most 4096 (the soft descriptor
                                   limit is raised to the hard one at start).
          --max-groups N           Most groups at once, created by local clients or bound by peers (default
                                   1024). A client over it gets ERROR group_limit; a peer's group over it is
                                   refused for that group alone (counted as groups_refused).
          --group-grace-ms N       A group with no client and nothing queued is released after this long
                                   (default 60000).
          --max-ring-bytes N       Largest shared-memory ring granted to a client (default 67108864; 0: rings off,
                                   every client uses the socket).
          --join HOST:PORT         Join a running group through any member (repeatable; needs --listen): the member
                                   answers with the group's sites, this broker links to each, and every member
                                   learns this site. A site id already in use elsewhere is refused (exit 1).
          --group-key-file FILE    A secret (16 bytes or more) every broker of the group shares: peer links prove it
                                   with HMAC-SHA256 over per-connection nonces before anything else, and a broker
                                   without it (or with another) can neither link nor join.
          --tls-cert FILE          This site's certificate (PEM, with its chain). With --tls-key and --tls-ca or
          --tls-key FILE           --tls-pin, every peer link is TLS 1.3 and nothing older; both ends present
          --tls-ca FILE            certificates and verify each other's against the CA. The certificate names the
                                   site: a SAN URI repbroker://site/ID; a peer's HELLO must name the same site.
                                   Needs OpenSSL 3 (Debian: libssl3), loaded only when TLS is configured. Every
                                   broker of the group needs TLS, or none. SIGHUP or `repbroker reload-tls`
                                   reads the files again: links up keep their sessions, new ones use the new files.
          --tls-pin ID=SHA256      Instead of (or beside) a CA: the SHA-256 of site ID's certificate (repeatable;
                                   `openssl x509 -noout -fingerprint -sha256 -in cert.pem`).
          --state-dir DIR          Where the membership file is kept (default: the --socket directory); a restarted
                                   broker reconnects to every site it knew.
          --idle-strategy NAME     What the loop does when it finds no work: backoff (default: spin 20 passes,
                                   poll yielding the core 100 times, then sleep in epoll with timeouts growing
                                   from 1 ms),
                                   spin (never sleep: lowest latency, one core always busy) or block (sleep at
                                   once: least CPU, a wake-up per message when traffic is light).
          --exit-with-parent       Stop (as on SIGTERM) when the process that started the broker exits.
          -h, --help               Show this help.

        SIGHUP: reload the TLS certificates. SIGTERM or SIGINT: stop accepting, flush peer queues for up to 2 s, remove the sockets, exit 0.
        Exit codes: 0 after a clean stop, 1 on failure (e.g. a live broker on the socket path), 64 on usage errors.
        """
}
