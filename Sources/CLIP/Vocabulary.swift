// Where the tokenizer vocabulary comes from: `--vocab`, files next to the weights, $CAVPT_DIST_VOCAB,
// the executable's folder, or the copy this repository carries in Sources/CLIP/Resources/.
import Foundation

/// A tokenizer vocabulary on disk, in one of the two formats CLIP ships in.
public enum VocabularySource: Sendable, Equatable, CustomStringConvertible {
    /// open_clip / OpenAI `bpe_simple_vocab_16e6.txt.gz` (merges only; ids implied).
    case bpeGzip(path: String)
    /// Hugging Face `vocab.json` + `merges.txt`.
    case huggingFace(vocabJSON: String, merges: String)

    public var description: String {
        switch self {
        case let .bpeGzip(path): return path
        case let .huggingFace(vocabJSON, merges): return "\(vocabJSON) + \(merges)"
        }
    }
}

public enum VocabularyError: Error, CustomStringConvertible {
    case badPath(path: String, origin: String, reason: String)
    case notFound(searched: [String])

    public var description: String {
        switch self {
        case let .badPath(path, origin, reason):
            return "\(path) (\(origin)): \(reason)"
        case let .notFound(searched):
            return
                "no CLIP tokenizer vocabulary found (looked in \(searched.joined(separator: ", "))); pass --vocab "
                + "FILE (bpe_simple_vocab_16e6.txt.gz, or a vocab.json with merges.txt beside it)"
        }
    }
}

public let defaultVocabularyFileName = "bpe_simple_vocab_16e6.txt.gz"
public let vocabularyEnvironmentVariable = "CAVPT_DIST_VOCAB"

/// The tokenizer vocabulary to use, first found of:
/// 1. `override` (`--vocab`): a .gz file, a `vocab.json` or `merges.txt` (its partner beside it), or a folder;
/// 2. the weights' folder (`modelPath` is the weights file or its folder);
/// 3. `$CAVPT_DIST_VOCAB` (same forms as `override`);
/// 4. `bpe_simple_vocab_16e6.txt.gz` beside the running executable;
/// 5. the copy this repository carries, `<package root>/Sources/CLIP/Resources/bpe_simple_vocab_16e6.txt.gz`
///    (open_clip's file, MIT), so a build from a clone tokenizes with no flag.
/// An explicit path (1 or 3) that does not hold a vocabulary is an error rather than skipped.
public func findVocabulary(
    modelPath: String?, override: String?,
    environment: [String: String] = ProcessInfo.processInfo.environment
) throws -> VocabularySource {
    if let override { return try vocabulary(at: override, origin: "--vocab") }
    var searched: [String] = []
    if let modelPath {
        // The weights path is a folder, or a file whose folder is searched (whether or not it exists yet).
        var isDirectory: ObjCBool = false
        let isFolder =
            FileManager.default.fileExists(atPath: modelPath, isDirectory: &isDirectory) && isDirectory.boolValue
        let folder = isFolder ? modelPath : (modelPath as NSString).deletingLastPathComponent
        let folderPath = folder.isEmpty ? "." : folder
        if let found = vocabulary(inFolder: folderPath) { return found }
        searched.append(folderPath)
    }
    if let value = environment[vocabularyEnvironmentVariable], !value.isEmpty {
        return try vocabulary(at: value, origin: "$\(vocabularyEnvironmentVariable)")
    }
    searched.append("$\(vocabularyEnvironmentVariable)")
    if let executable = executablePath() {
        let folder = (executable as NSString).deletingLastPathComponent
        let candidate = (folder as NSString).appendingPathComponent(defaultVocabularyFileName)
        if FileManager.default.fileExists(atPath: candidate) { return .bpeGzip(path: candidate) }
        searched.append(folder)
    }
    let bundled = bundledVocabularyPath
    if FileManager.default.fileExists(atPath: bundled) { return .bpeGzip(path: bundled) }
    searched.append((bundled as NSString).deletingLastPathComponent)
    throw VocabularyError.notFound(searched: searched)
}

/// A vocabulary named explicitly: a file or a folder.
func vocabulary(at path: String, origin: String) throws -> VocabularySource {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw VocabularyError.badPath(path: path, origin: origin, reason: "no such file or folder")
    }
    if isDirectory.boolValue {
        if let found = vocabulary(inFolder: path) { return found }
        throw VocabularyError.badPath(
            path: path, origin: origin,
            reason: "folder holds neither \(defaultVocabularyFileName) nor vocab.json + merges.txt")
    }
    let folder = (path as NSString).deletingLastPathComponent
    let name = (path as NSString).lastPathComponent
    func sibling(_ other: String) -> String {
        folder.isEmpty ? other : (folder as NSString).appendingPathComponent(other)
    }
    if name.hasSuffix(".json") {
        let merges = sibling("merges.txt")
        guard FileManager.default.fileExists(atPath: merges) else {
            throw VocabularyError.badPath(path: path, origin: origin, reason: "a vocab.json needs merges.txt beside it")
        }
        return .huggingFace(vocabJSON: path, merges: merges)
    }
    if name == "merges.txt" {
        let vocab = sibling("vocab.json")
        guard FileManager.default.fileExists(atPath: vocab) else {
            throw VocabularyError.badPath(path: path, origin: origin, reason: "merges.txt needs vocab.json beside it")
        }
        return .huggingFace(vocabJSON: vocab, merges: path)
    }
    // Anything else is taken as the gzip merges file; loading it reports if it is not.
    return .bpeGzip(path: path)
}

/// Tokenizer files inside `folder`, if any.
func vocabulary(inFolder folder: String) -> VocabularySource? {
    let manager = FileManager.default
    let gz = (folder as NSString).appendingPathComponent(defaultVocabularyFileName)
    if manager.fileExists(atPath: gz) { return .bpeGzip(path: gz) }
    let vocab = (folder as NSString).appendingPathComponent("vocab.json")
    let merges = (folder as NSString).appendingPathComponent("merges.txt")
    if manager.fileExists(atPath: vocab) && manager.fileExists(atPath: merges) {
        return .huggingFace(vocabJSON: vocab, merges: merges)
    }
    return nil
}

/// The running executable's path (/proc/self/exe on Linux, else argv[0] made absolute).
func executablePath() -> String? {
    if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return resolved }
    guard let first = CommandLine.arguments.first, first.contains("/") else { return nil }
    return URL(fileURLWithPath: first).standardizedFileURL.path
}

/// The package root this module was compiled from (Sources/CLIP/ is two levels below it).
/// The vocabulary the repository carries (found from this source file's path at build time).
public let bundledVocabularyPath = packageRoot() + "/Sources/CLIP/Resources/" + defaultVocabularyFileName

func packageRoot(_ file: String = #filePath) -> String {
    URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
}
