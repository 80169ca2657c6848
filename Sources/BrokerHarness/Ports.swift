// Loopback ports for brokers started by tests, the demo and benchmarks: chosen below the kernel's
// ephemeral range (so outgoing connections never take them), checked free by binding, never handed out
// twice by one process.
import BrokerSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum FreePort {
    private static let lock = ConditionLock()
    nonisolated(unsafe) private static var handedOut: Set<UInt16> = []

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    public static func next() -> UInt16 {
        lock.withLock {
            while true {
                let port = UInt16.random(in: 20_000...32_000)
                guard !handedOut.contains(port), isFree(port) else { continue }
                handedOut.insert(port)
                return port
            }
        }
    }

    static func isFree(_ port: UInt16) -> Bool {
        guard let address = try? SocketAddress("127.0.0.1:\(port)"), let listener = try? Socket.listenTCP(address) else {
            return false
        }
        listener.close()
        return true
    }
}

/// A fresh temporary directory, removed by `remove()`. Short paths: Unix socket paths are limited.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(prefix: String = "rb") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
            return String(cString: base)
        }
        guard let made else { throw SystemError("mkdtemp", .current) }
        path = made
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Where the project's executables are: next to the running one (`.build/<config>/`).
public enum Executables {
    public static var directory: String {
        var dir = URL(fileURLWithPath: current).deletingLastPathComponent()
        // A test bundle may sit one level below the products.
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir.path
    }

    public static func path(_ name: String) -> String { directory + "/" + name }

    /// The running program itself (`/proc/self/exe`).
    public static var current: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// A program to start as a child: an executable and the arguments that always come first.
///
/// `swift run X` builds only product X, so a command that needs a broker (or any other program) at run time
/// starts itself with a subcommand (`.current("daemon")`) instead of a sibling executable that may not be built.
public struct Program: Sendable {
    public var executable: String
    public var leadingArguments: [String]

    public init(executable: String, leadingArguments: [String] = []) {
        self.executable = executable
        self.leadingArguments = leadingArguments
    }

    /// A product next to the running program (tests: `swift test` builds every product).
    public static func named(_ name: String) -> Program { Program(executable: Executables.path(name)) }

    /// The running program with `subcommand` first.
    public static func current(_ subcommand: String) -> Program {
        Program(executable: Executables.current, leadingArguments: [subcommand])
    }

    /// The root package's broker executable.
    public static var repbrokerd: Program { .named("repbrokerd") }
}
