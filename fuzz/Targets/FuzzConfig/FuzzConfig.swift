import CLibFuzzer
// libFuzzer target: the whole config-load path. The input is a YAML file, then `--set`
// assignments, separated by NUL bytes; the YAML is also read as a dataset definition and as
// a `fewshot` command config.
import Data
import Foundation
import Training

private let scratch: String = {
    let folder = NSTemporaryDirectory() + "cavpt-fuzz-config-\(getpid())"
    try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    return folder
}()

@main enum FuzzConfig {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = bytes else { return 0 }
    let parts = UnsafeBufferPointer(start: data, count: size).split(separator: 0, omittingEmptySubsequences: false)
    let yaml = parts.first.map { Data($0) } ?? Data()
    let file = scratch + "/config.yaml"
    guard FileManager.default.createFile(atPath: file, contents: yaml) else { return 0 }
    var options = RunOptions()
    options.configFile = file
    options.sets = parts.dropFirst().map { String(decoding: $0, as: UTF8.self) }
    if let config = try? RunSetup.config(options) {
        _ = config.yaml()
        _ = config.settings
        _ = try? config.differences(from: Config())
    }
    _ = try? DatasetSpec(contentsOf: file)
    _ = try? DatasetConfigFile(contentsOf: file)
    return 0
}
