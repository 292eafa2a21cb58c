// Shared helpers for the CLIP tests: fixture paths, scratch folders, raw file writing, error text.
import Foundation

/// The package root, found from this file's path (Tests/CLIPTests/ is two levels below it).
let packageRootForTests: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

func fixturePath(_ relative: String) -> String {
    (packageRootForTests as NSString).appendingPathComponent("Tests/Fixtures/\(relative)")
}

/// The CLIP vocabulary the repository carries: <package root>/Sources/CLIP/Resources/.
let bundledVocabularyForTests: String = packageRootForTests + "/Sources/CLIP/Resources/bpe_simple_vocab_16e6.txt.gz"

/// A fresh empty folder under the system temporary directory.
func makeScratchFolder(_ label: String = #function) throws -> String {
    let safe = label.filter { $0.isLetter || $0.isNumber }
    let path = (NSTemporaryDirectory() as NSString)
        .appendingPathComponent("cavpt-clip-\(safe)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The description of the error `body` throws, or nil if it does not throw.
func thrownMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return String(describing: error)
    }
}

/// Writes a safetensors-shaped file by hand: length prefix (real or forced), header text, data bytes.
func writeRawSafeTensors(header: String, data: [UInt8], headerLength: UInt64? = nil, to path: String) throws {
    let headerBytes = Array(header.utf8)
    var bytes: [UInt8] = []
    var length = (headerLength ?? UInt64(headerBytes.count)).littleEndian
    withUnsafeBytes(of: &length) { bytes += $0 }
    bytes += headerBytes
    bytes += data
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// JSON fixture loader.
func loadJSON(_ relative: String) throws -> Any {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixturePath(relative)))
    return try JSONSerialization.jsonObject(with: data)
}
