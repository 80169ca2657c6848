// What /proc says about processes: CPU seconds, resident memory, and the established TCP connections
// their sockets take part in (for the benchmarks' cost columns).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum ProcessStats {
    /// A /proc file read to its end (procfs reports size 0, so whole-file readers may stop at one page).
    public static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            data += chunk[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// User plus system CPU seconds used so far by `pid` (all its threads).
    public static func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = read("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Voluntary context switches of `pid` so far, its living threads' summed: how often it went to sleep
    /// waiting (each one a wake-up later).
    public static func voluntarySwitches(_ pid: Int32) -> Int {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return 0 }
        var total = 0
        for task in tasks {
            guard let status = read("/proc/\(pid)/task/\(task)/status") else { continue }
            for line in status.split(separator: "\n") where line.hasPrefix("voluntary_ctxt_switches:") {
                total += Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        return total
    }

    /// Resident memory of `pid` in bytes (VmRSS: every kind).
    public static func residentBytes(_ pid: Int32) -> Int { residentMemory(pid).total }

    /// Resident memory of `pid` by kind (/proc/PID/status), in bytes.
    public struct ResidentMemory: Sendable {
        /// RssAnon: the heap, stacks and other private anonymous memory.
        public var anonymous = 0
        /// RssFile: pages of mapped files (the executable and its libraries).
        public var file = 0
        /// RssShmem: pages of shared memory mapped (memfd rings, shared anonymous mappings).
        public var shared = 0
        public var total: Int { anonymous + file + shared }
    }

    public static func residentMemory(_ pid: Int32) -> ResidentMemory {
        var memory = ResidentMemory()
        guard let status = read("/proc/\(pid)/status") else { return memory }
        for line in status.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let kilobytes = Int(fields[1]) else { continue }
            switch fields[0] {
            case "RssAnon:": memory.anonymous = kilobytes * 1024
            case "RssFile:": memory.file = kilobytes * 1024
            case "RssShmem:": memory.shared = kilobytes * 1024
            default: break
            }
        }
        return memory
    }

    /// Socket inodes held by `pid`.
    static func socketInodes(_ pid: Int32) -> Set<String> {
        let directory = "/proc/\(pid)/fd"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var inodes = Set<String>()
        for entry in entries {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + entry),
                  target.hasPrefix("socket:[") else { continue }
            inodes.insert(String(target.dropFirst(8).dropLast()))
        }
        return inodes
    }

    /// Established TCP connections (IPv4 and IPv6) with an end held by one of `pids`.
    public static func establishedConnections(of pids: [Int32]) -> Int {
        let inodes = pids.reduce(into: Set<String>()) { $0.formUnion(socketInodes($1)) }
        var count = 0
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = read(table) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                // Column 4 is the state (01 = ESTABLISHED), column 10 the inode.
                if fields.count > 9, fields[3] == "01", inodes.contains(String(fields[9])) { count += 1 }
            }
        }
        return count
    }
}
