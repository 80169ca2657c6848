// Separate hosts on one machine: one network namespace per site, each with a veth pair to a bridge that
// lives in a namespace of its own (nothing is added to the machine's own network). Sites get 10.77.0.<id>/24,
// so a broker there can listen on 0.0.0.0 as on a real host, and loopback no longer hides address bugs.
// Needs root (or CAP_NET_ADMIN) and iproute2; `available` says whether this machine permits it.
import BrokerSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class NetworkNamespaces: @unchecked Sendable {
    /// Namespace names: "rb<pid>x<n>s<site>" and "rb<pid>x<n>sw" (the bridge).
    public let prefix: String
    public let sites: [Int32]
    private var created: [String] = []

    nonisolated(unsafe) private static var counter = 0
    private static let lock = ConditionLock()

    public static let ipCommand = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Whether namespaces can be made here (tried once: an empty namespace made and removed).
    public static let available: Bool = {
        guard ipCommand != nil, getuid() == 0 else { return false }
        let name = "rbprobe\(getpid())"
        guard (try? run(["netns", "add", name])) != nil else { return false }
        _ = try? run(["netns", "del", name])
        return true
    }()

    public static let unavailableReason = "network namespaces need root and iproute2 ('ip netns add' failed or ip is missing)"

    /// Makes one namespace per site, linked by a bridge, with the loopback interface up in each.
    public init(sites: [Int32]) throws {
        let number = Self.lock.withLock { () -> Int in
            Self.counter += 1
            return Self.counter
        }
        prefix = "rb\(getpid())x\(number)"
        self.sites = sites
        do {
            let bridge = prefix + "sw"
            try add(bridge)
            try Self.run(["-n", bridge, "link", "add", "br0", "type", "bridge"])
            try Self.run(["-n", bridge, "link", "set", "br0", "up"])
            for site in sites {
                let namespace = self.namespace(site)
                try add(namespace)
                try Self.run(["link", "add", "eth0", "netns", namespace, "type", "veth",
                              "peer", "name", "p\(site)", "netns", bridge])
                try Self.run(["-n", namespace, "addr", "add", "\(address(site))/24", "dev", "eth0"])
                try Self.run(["-n", namespace, "link", "set", "eth0", "up"])
                try Self.run(["-n", namespace, "link", "set", "lo", "up"])
                try Self.run(["-n", bridge, "link", "set", "p\(site)", "master", "br0"])
                try Self.run(["-n", bridge, "link", "set", "p\(site)", "up"])
            }
        } catch {
            remove()
            throw error
        }
    }

    public func namespace(_ site: Int32) -> String { prefix + "s\(site)" }

    /// The site's address on the bridge.
    public func address(_ site: Int32) -> String { "10.77.0.\(site)" }

    /// `program` run inside the site's namespace (`ip netns exec` execs it: the pid is the program's).
    public func program(_ program: Program, in site: Int32) -> Program {
        Program(executable: Self.ipCommand ?? "/usr/sbin/ip",
                leadingArguments: ["netns", "exec", namespace(site), program.executable] + program.leadingArguments)
    }

    /// Another address on the bridge for the site, for a host that moves: 10.77.0.<100 + id>.
    public func movedAddress(_ site: Int32) -> String { "10.77.0.\(100 + site)" }

    /// Gives the site's interface `address` in place of the ones it had.
    public func setAddress(_ site: Int32, _ address: String) throws {
        try Self.run(["-n", namespace(site), "addr", "flush", "dev", "eth0"])
        try Self.run(["-n", namespace(site), "addr", "add", "\(address)/24", "dev", "eth0"])
    }

    /// Cuts the site off the bridge (its veth down), or joins it again.
    public func setConnected(_ site: Int32, _ connected: Bool) throws {
        try Self.run(["-n", namespace(site), "link", "set", "eth0", connected ? "up" : "down"])
    }

    /// Removes every namespace (their interfaces and the bridge go with them).
    public func remove() {
        for name in created.reversed() { _ = try? Self.run(["netns", "del", name]) }
        created.removeAll()
    }

    private func add(_ name: String) throws {
        try Self.run(["netns", "add", name])
        created.append(name)
    }

    /// Runs `ip` with `arguments`; throws with its output when it fails.
    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        guard let ip = ipCommand else { throw HarnessError("ip (iproute2) is not installed") }
        return try runToEnd(ip, arguments)
    }
}
