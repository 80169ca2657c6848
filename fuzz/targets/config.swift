// Fuzz target: a broker's JSON configuration file, decoded, mapped over the defaults and validated, as
// `repbrokerd --config FILE` does. Any input may be refused with an error; none may crash.
// Compiled into one module with Sources/BrokerSystem, Sources/BrokerWire and Sources/BrokerDaemon (scripts/fuzz).
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    guard let file = try? JSONDecoder().decode(ConfigFile.self, from: bytes),
          let arguments = try? ParsedArguments([], valued: BrokerConfig.valuedOptions, flagNames: BrokerConfig.flagNames),
          let config = try? BrokerConfig.from(arguments: arguments, file: file) else { return 0 }
    _ = try? config.validate()
    return 0
}
