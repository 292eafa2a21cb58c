import CLibFuzzer
import Foundation

// libFuzzer target: the safetensors header (length prefix, JSON, dtype/shape/offset checks) of a
// whole file held in memory, as `SafeTensorsFile(path:)` validates it after mmap.
@testable import Files

@main enum FuzzSafeTensors {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = bytes else { return 0 }
    // The header parser reads an 8-byte length first; SafeTensorsFile refuses shorter files before it.
    guard size >= 8 else { return 0 }
    _ = try? SafeTensorsFile.parseHeader(UnsafeRawPointer(data), fileBytes: size, file: "<fuzz>")
    return 0
}
