// Status lines on standard output, written whole and at once (the scenario reads them while we run).
import Foundation

public func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

public func complain(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
