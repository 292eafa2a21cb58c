import CLibFuzzer
// libFuzzer target: CoOp's split_zhou_*.json and the few-shot JSON, each read from a file the
// way a run reads them (the input is written to a scratch file first).
import Data
import Foundation

private let scratch: String = {
    let folder = NSTemporaryDirectory() + "cavpt-fuzz-split-\(getpid())"
    try? FileManager.default.createDirectory(atPath: folder + "/images", withIntermediateDirectories: true)
    return folder
}()

@main enum FuzzSplitJSON {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data = bytes else { return 0 }
    let file = scratch + "/split.json"
    guard FileManager.default.createFile(atPath: file, contents: Data(bytes: data, count: size)) else { return 0 }
    let spec = DatasetSpec(
        name: "fuzz", layout: .coopSplit, folder: "", images: "images",
        splitFile: "split.json", template: "a photo of a {}.")
    let splits = try? loadDataset(spec: spec, dataRoot: scratch)
    if let lists = try? FewShotLists.read(from: file), let splits {
        _ = try? lists.validate(against: splits, file: file)
    }
    return 0
}
