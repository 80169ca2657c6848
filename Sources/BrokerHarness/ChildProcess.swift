// A child process with its standard output captured line by line (thread-safe) and its standard error
// sent to a file. Used to run real brokers and clients in the demo, benchmarks and tests.
import BrokerSystem
import Foundation

/// Every child the harness starts is started under this lock. Foundation's `Process.run` makes a socket pair
/// without close-on-exec and learns of the child's exit only when the child's end closes; it closes the
/// other descriptors in the child only up to the highest open when it looked. A child started at the same moment
/// on another thread could inherit that end (and a new child's pipes) and hold them for its whole life: then
/// `isRunning` stayed true for a compiler that had exited, until a broker started beside it was stopped (a CI
/// run waited out its 180 s build timeout so).
private let spawnLock = NSLock()

/// Runs `body`, which makes a child's pipes and starts it, under the harness's spawn lock and with no signal
/// blocked on the calling thread (the child inherits the mask; see `Posix.withNoSignalsBlocked`).
public func startingChild<T>(_ body: () throws -> T) rethrows -> T {
    spawnLock.lock()
    defer { spawnLock.unlock() }
    return try Posix.withNoSignalsBlocked(body)
}

/// Runs `executable` with `arguments` (in `directory`) to its end; its standard output and error together.
/// Throws with that output when it exits with a failure.
@discardableResult
public func runToEnd(_ executable: String, _ arguments: [String], in directory: String? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let pipe = try startingChild {
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        return pipe
    }
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw HarnessError("\(executable) \(arguments.joined(separator: " ")) failed: \(output)")
    }
    return output
}

public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    public let name: String
    private let stdinPipe: Pipe
    private let stdoutPipe: Pipe
    private let lock = ConditionLock()
    private var outputLines: [String] = []
    private var partial = Data()
    private var outputClosed = false
    private var inputClosed = false

    /// Starts `executable` with `arguments` (in `directory`, or this process's); stderr goes to `stderrPath`
    /// (appended) or is discarded. `environment` is added to this process's own.
    public init(name: String, executable: String, arguments: [String], stderrPath: String? = nil,
                environment: [String: String] = [:], directory: String? = nil) throws {
        self.name = name
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let process = self.process
        (stdinPipe, stdoutPipe) = try startingChild {
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            if let stderrPath {
                if !FileManager.default.fileExists(atPath: stderrPath) {
                    _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
                }
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
                handle.seekToEndOfFile()
                process.standardError = handle
            } else {
                process.standardError = FileHandle.nullDevice
            }
            try process.run()
            return (input, output)
        }
        let reader = stdoutPipe.fileHandleForReading
        startThread { [self] in
            while true {
                let data = reader.availableData
                lock.withLock {
                    if data.isEmpty {
                        if !partial.isEmpty { outputLines.append(String(decoding: partial, as: UTF8.self)) }
                        partial.removeAll()
                        outputClosed = true
                    } else {
                        partial.append(data)
                        while let newline = partial.firstIndex(of: UInt8(ascii: "\n")) {
                            outputLines.append(String(decoding: partial[partial.startIndex..<newline], as: UTF8.self))
                            partial.removeSubrange(partial.startIndex...newline)
                        }
                    }
                    lock.broadcast()
                }
                if data.isEmpty {
                    // The child is done with its output: its pipes are closed here, not when this object goes
                    // (a bench that runs tens of thousands of children must not hold two descriptors for each).
                    try? reader.close()
                    closeInput()
                    return
                }
            }
        }
    }

    /// Starts `program` with its leading arguments, then `arguments`.
    public convenience init(name: String, program: Program, arguments: [String], stderrPath: String? = nil,
                            environment: [String: String] = [:]) throws {
        try self.init(name: name, executable: program.executable, arguments: program.leadingArguments + arguments,
                      stderrPath: stderrPath, environment: environment)
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// Complete lines printed so far.
    public var lines: [String] { lock.withLock { outputLines } }

    /// Waits until `condition` holds for the lines printed so far, or the deadline passes.
    @discardableResult
    public func waitForLines(timeout: Double, _ condition: ([String]) -> Bool) -> Bool {
        let deadline = Posix.monotonicNanoseconds() + UInt64(timeout * 1e9)
        return lock.withLock {
            while !condition(outputLines) {
                if outputClosed { return condition(outputLines) }
                if !lock.wait(untilNanoseconds: deadline) { return condition(outputLines) }
            }
            return true
        }
    }

    /// Waits until the child's output has ended (it exited and every line was read), or `timeout` passes.
    @discardableResult
    public func waitForOutputEnd(timeout: Double) -> Bool {
        let deadline = Posix.monotonicNanoseconds() + UInt64(timeout * 1e9)
        return lock.withLock {
            while !outputClosed {
                if !lock.wait(untilNanoseconds: deadline) { return outputClosed }
            }
            return true
        }
    }

    /// Writes text to the child's standard input.
    public func write(_ text: String) {
        // Not under the lock: a child that does not read could fill the pipe. A write racing closeInput fails
        // with an error (write(contentsOf:) throws), never a trap.
        guard !lock.withLock({ inputClosed }) else { return }
        // A child that exited makes the write fail with EPIPE; its SIGPIPE would end the whole test process.
        Posix.withoutSIGPIPE { try? stdinPipe.fileHandleForWriting.write(contentsOf: Data(text.utf8)) }
    }

    public func closeInput() {
        lock.withLock {
            guard !inputClosed else { return }
            inputClosed = true
            try? stdinPipe.fileHandleForWriting.close()
        }
    }

    public func signal(_ number: Int32) {
        if process.isRunning { kill(process.processIdentifier, number) }
    }

    /// Waits for the child to exit and its output to be read; returns its status, or nil if it still runs after `timeout`.
    @discardableResult
    public func waitForExit(timeout: Double) -> Int32? {
        let exited = Deadline.wait(timeout: timeout) { !process.isRunning }
        guard exited else { return nil }
        process.waitUntilExit()
        // The reader thread may still be taking the last of its output from the pipe: `lines` after this call
        // holds everything the child printed (a busy machine made a test see 1,500 of 1,800 lines).
        waitForOutputEnd(timeout: 5)
        return process.terminationStatus
    }

    /// Kills the child (SIGKILL) and reaps it.
    public func kill9() {
        signal(SIGKILL)
        _ = waitForExit(timeout: 10)
    }

    /// Runs `program` to its end and returns its standard output's lines; nil when it cannot start, fails, or
    /// runs past `timeout` seconds (then it is killed).
    public static func outputLines(of program: Program, _ arguments: [String], timeout: Double = 30) -> [String]? {
        guard let child = try? ChildProcess(name: arguments.first ?? "child", program: program, arguments: arguments)
        else { return nil }
        guard child.waitForExit(timeout: timeout) == 0 else {
            child.kill9()
            return nil
        }
        child.waitForOutputEnd(timeout: 5)
        return child.lines
    }
}

/// Waiting on conditions with deadlines.
public enum Deadline {
    /// Polls `condition` every `interval` seconds until it holds (true) or `timeout` passes (false).
    public static func wait(timeout: Double, interval: Double = 0.01, _ condition: () -> Bool) -> Bool {
        let deadline = Posix.monotonicNanoseconds() + UInt64(timeout * 1e9)
        while true {
            if condition() { return true }
            if Posix.monotonicNanoseconds() >= deadline { return condition() }
            usleep(UInt32(interval * 1e6))
        }
    }
}
