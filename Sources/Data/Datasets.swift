// Dataset readers for the folder layouts CoOp/Dassl users already have on disk: CoOp split JSON,
// FGVC-Aircraft's txt lists, CoOp's ImageNet folders, and a generic image-folder layout.
import Files
import Foundation
import Tensor

/// One labelled image; `path` is relative to the dataset's image folder, as in the split files.
public struct Sample: Hashable, Sendable, Codable, CustomStringConvertible {
    public var path: String
    public var label: Int

    public init(path: String, label: Int) {
        self.path = path
        self.label = label
    }

    public var description: String { "[\(path), \(label)]" }

    // JSON form `[path, label]`, like a CoOp split entry; a third element (the class name,
    // as CoOp's entries and exported few-shot pickles carry) is accepted and ignored.
    public init(from decoder: Decoder) throws {
        var entry = try decoder.unkeyedContainer()
        path = try entry.decode(String.self)
        label = try entry.decode(Int.self)
    }

    public func encode(to encoder: Encoder) throws {
        var entry = encoder.unkeyedContainer()
        try entry.encode(path)
        try entry.encode(label)
    }
}

/// A dataset's three split lists and its class names.
public struct DatasetSplits: Sendable, Equatable {
    public var name: String
    /// Absolute folder the samples' paths are relative to.
    public var imageRoot: String
    public var train: [Sample]
    public var val: [Sample]
    public var test: [Sample]
    /// [K] class names by label, after the dataset's class-name rules.
    public var classNames: [String]

    public init(name: String, imageRoot: String, train: [Sample], val: [Sample], test: [Sample], classNames: [String]) {
        self.name = name
        self.imageRoot = imageRoot
        self.train = train
        self.val = val
        self.test = test
        self.classNames = classNames
    }

    /// The file a sample's pixels come from.
    public func imagePath(of sample: Sample) -> String { joinPath(imageRoot, sample.path) }
}

/// Reads a dataset's splits from `dataRoot` as its spec describes. Image files are not opened
/// here; a missing one is reported when it is decoded, naming the list that referenced it.
public func loadDataset(spec: DatasetSpec, dataRoot: String) throws -> DatasetSplits {
    let datasetFolder = joinPath(absolutePath(dataRoot), spec.folder)
    guard ConfigLocator.isDirectory(datasetFolder) else {
        throw DataError.layout(
            path: datasetFolder,
            reason: "no such folder (dataset '\(spec.name)' expects "
                + "<data-root>/\(spec.folder.isEmpty ? "" : spec.folder + "/") with data root \(dataRoot))")
    }
    let imageRoot = joinPath(datasetFolder, spec.images)
    guard ConfigLocator.isDirectory(imageRoot) else {
        throw DataError.layout(path: imageRoot, reason: "no such image folder (dataset '\(spec.name)')")
    }
    switch spec.layout {
    case .coopSplit:
        return try readCoOpSplit(file: joinPath(datasetFolder, spec.splitFile ?? ""), spec: spec, imageRoot: imageRoot)
    case .fgvcAircraft:
        return try readFGVCAircraft(folder: datasetFolder, spec: spec, imageRoot: imageRoot)
    case .imagenet:
        return try readImageNet(folder: datasetFolder, spec: spec, imageRoot: imageRoot)
    case .imageFolder:
        return try readImageFolder(spec: spec, imageRoot: imageRoot)
    case .wnidFolders, .imagenetV2:
        return try readImageNetVariant(folder: datasetFolder, spec: spec, imageRoot: imageRoot)
    }
}

// MARK: - CoOp split JSON

/// `{"train": [[relpath, label, classname], ...], "val": [...], "test": [...]}` (CoOp's read_split).
func readCoOpSplit(file: String, spec: DatasetSpec, imageRoot: String) throws -> DatasetSplits {
    func fail(_ reason: String) -> DataError { .splitFile(file: file, reason: reason) }
    let bytes: Data
    do { bytes = Data(try RegularFile.read(file)) } catch let error as RegularFileError {
        throw fail(error.briefReason)
    }
    let json: Any
    do { json = try JSONSerialization.jsonObject(with: bytes) } catch {
        throw fail("not valid JSON (\(error.localizedDescription))")
    }
    guard let object = json as? [String: Any] else { throw fail("expected an object with train, val and test lists") }
    var names = ClassNameCollector(file: file)
    var lists: [String: [Sample]] = [:]
    for split in ["train", "val", "test"] {
        guard let value = object[split] else { throw fail("missing the \"\(split)\" list") }
        guard let entries = value as? [Any] else { throw fail("\"\(split)\" is not a list") }
        var samples: [Sample] = []
        samples.reserveCapacity(entries.count)
        for (i, entry) in entries.enumerated() {
            guard let fields = entry as? [Any], fields.count == 3, let path = fields[0] as? String,
                let label = integer(fields[1]), label >= 0, let name = fields[2] as? String
            else {
                throw fail("\(split)[\(i)] is not [relative path, label >= 0, class name]: \(shortJSON(entry))")
            }
            try names.record(label: label, name: name, at: "\(split)[\(i)]")
            samples.append(Sample(path: path, label: label))
        }
        lists[split] = samples
    }
    return DatasetSplits(
        name: spec.name, imageRoot: imageRoot, train: lists["train"] ?? [], val: lists["val"] ?? [],
        test: lists["test"] ?? [], classNames: try names.classNames(rules: spec.classNames))
}

/// JSON numbers arrive as NSNumber; accept integral ones, not booleans (objCType "c") or strings.
private func integer(_ value: Any) -> Int? {
    guard !(value is String), let number = value as? NSNumber else { return nil }
    switch String(cString: number.objCType) {
    case "c", "B": return nil
    case "d", "f":
        let d = number.doubleValue
        return d == d.rounded() && abs(d) < 1e15 ? Int(d) : nil
    default: return number.intValue
    }
}

private func shortJSON(_ value: Any) -> String {
    let text =
        (try? JSONSerialization.data(withJSONObject: [value], options: [.withoutEscapingSlashes])).flatMap {
            String(data: $0, encoding: .utf8)
        }
        .map { String($0.dropFirst().dropLast()) } ?? "\(value)"
    return text.count > 80 ? String(text.prefix(77)) + "..." : text
}

/// Class names by label, checked for consistency and for labels without gaps.
struct ClassNameCollector {
    let file: String
    private var byLabel: [Int: (name: String, firstSeen: String)] = [:]

    init(file: String) { self.file = file }

    mutating func record(label: Int, name: String, at place: String) throws {
        if let known = byLabel[label] {
            if known.name != name {
                throw DataError.splitFile(
                    file: file,
                    reason: "label \(label) is '\(excerpt(known.name))' at \(known.firstSeen) "
                        + "but '\(excerpt(name))' at \(place)")
            }
        } else {
            byLabel[label] = (name, place)
        }
    }

    func classNames(rules: ClassNameRules) throws -> [String] {
        guard let maxLabel = byLabel.keys.max() else {
            throw DataError.splitFile(file: file, reason: "no samples in any list")
        }
        return try (0...maxLabel).map { label in
            guard let entry = byLabel[label] else {
                throw DataError.splitFile(
                    file: file,
                    reason: "no sample has label \(label), "
                        + "so it has no class name (labels must run 0..<\(maxLabel + 1))")
            }
            return rules.apply(entry.name)
        }
    }
}

// MARK: - FGVC-Aircraft

/// CoOp's FGVCAircraft reader: class `variants.txt` line order gives labels; each list line is
/// `<image id> <variant name with spaces>`; images are `images/<id>.jpg`.
func readFGVCAircraft(folder: String, spec: DatasetSpec, imageRoot: String) throws -> DatasetSplits {
    let classFile = joinPath(folder, spec.classFile ?? "")
    let variants = try readLines(classFile).map { $0.text }
    guard !variants.isEmpty else { throw DataError.splitFile(file: classFile, reason: "no class names") }
    var labelOf: [String: Int] = [:]
    for (label, name) in variants.enumerated() where labelOf[name] == nil { labelOf[name] = label }
    var lists: [String: [Sample]] = [:]
    for split in ["train", "val", "test"] {
        let file = joinPath(folder, (spec.splitFile ?? "").replacingOccurrences(of: "{split}", with: split))
        lists[split] = try readLines(file).map { line in
            let words = line.text.split(separator: " ", omittingEmptySubsequences: false)
            let className = words.dropFirst().joined(separator: " ")
            guard words.count >= 2, !words[0].isEmpty else {
                throw DataError.splitFile(
                    file: file, reason: "line \(line.number) is not '<image id> <variant>': \(excerpt(line.text))")
            }
            guard let label = labelOf[className] else {
                throw DataError.splitFile(
                    file: file, reason: "line \(line.number): variant '\(excerpt(className))' is not in \(classFile)")
            }
            return Sample(path: words[0] + ".jpg", label: label)
        }
    }
    return DatasetSplits(
        name: spec.name, imageRoot: imageRoot, train: lists["train"] ?? [], val: lists["val"] ?? [],
        test: lists["test"] ?? [], classNames: variants.map(spec.classNames.apply))
}

/// Non-empty lines with surrounding whitespace removed, with 1-based line numbers.
func readLines(_ file: String) throws -> [(number: Int, text: String)] {
    let text: String
    do { text = try RegularFile.text(file) } catch let error as RegularFileError {
        throw DataError.splitFile(file: file, reason: error.briefReason)
    }
    return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { i, line in
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        return trimmed.isEmpty ? nil : (i + 1, trimmed)
    }
}

// MARK: - ImageNet (CoOp)

/// CoOp's ImageNet: labels are the sorted wnid folders of `images/train`, names come from
/// `classnames.txt` ("<wnid> <name>"), and `images/val` serves as both val and test (as in CoOp).
/// Images within a class folder are sorted by name (CoOp lists them in directory order).
/// `classnames.txt`: "<wnid> <class name>" lines, in file order.
func readWnidNames(_ classFile: String) throws -> [(wnid: String, name: String)] {
    try readLines(classFile).map { line in
        let words = line.text.split(separator: " ", maxSplits: 1)
        guard words.count == 2 else {
            throw DataError.splitFile(
                file: classFile, reason: "line \(line.number) is not '<wnid> <class name>': \(line.text)")
        }
        return (String(words[0]), String(words[1]))
    }
}

func readImageNet(folder: String, spec: DatasetSpec, imageRoot: String) throws -> DatasetSplits {
    let classFile = joinPath(folder, spec.classFile ?? "")
    var nameOf: [String: String] = [:]
    for (wnid, name) in try readWnidNames(classFile) { nameOf[wnid] = name }
    let trainDir = joinPath(imageRoot, "train"), testDir = joinPath(imageRoot, "val")
    let wnids = try subfolders(of: trainDir)
    guard !wnids.isEmpty else { throw DataError.layout(path: trainDir, reason: "no class folders") }
    var labelOf: [String: Int] = [:]
    var classNames: [String] = []
    for (label, wnid) in wnids.enumerated() {
        guard let name = nameOf[wnid] else {
            throw DataError.splitFile(file: classFile, reason: "no class name for folder \(wnid) of \(trainDir)")
        }
        labelOf[wnid] = label
        classNames.append(spec.classNames.apply(name))
    }
    func read(_ split: String, _ dir: String) throws -> [Sample] {
        var samples: [Sample] = []
        for wnid in try subfolders(of: dir) {
            guard let label = labelOf[wnid] else {
                throw DataError.layout(path: joinPath(dir, wnid), reason: "class folder not present in \(trainDir)")
            }
            for file in try jpegFiles(in: joinPath(dir, wnid)) {
                samples.append(Sample(path: "\(split)/\(wnid)/\(file)", label: label))
            }
        }
        return samples
    }
    let test = try read("val", testDir)
    return DatasetSplits(
        name: spec.name, imageRoot: imageRoot, train: try read("train", trainDir), val: test,
        test: test, classNames: classNames)
}

/// ImageNet-V2 (`imagenet-v2`) and ImageNet-Sketch/-A/-R (`wnid-folders`), as CoOp's readers:
/// one image set serving as train, val and test (they are evaluated, not trained on).
func readImageNetVariant(folder: String, spec: DatasetSpec, imageRoot: String) throws -> DatasetSplits {
    let classFile = joinPath(folder, spec.classFile ?? "")
    let names = try readWnidNames(classFile)
    var samples: [Sample] = []
    var classNames: [String] = []
    if spec.layout == .imagenetV2 {
        // Folders 0…999: the label, and the index into classnames.txt's lines.
        for (label, entry) in names.enumerated() {
            classNames.append(spec.classNames.apply(entry.name))
            let dir = joinPath(imageRoot, String(label))
            guard ConfigLocator.isDirectory(dir) else { continue }
            for file in try jpegFiles(in: dir) { samples.append(Sample(path: "\(label)/\(file)", label: label)) }
        }
    } else {
        var nameOf: [String: String] = [:]
        for (wnid, name) in names { nameOf[wnid] = name }
        let wnids = try subfolders(of: imageRoot)
        guard !wnids.isEmpty else { throw DataError.layout(path: imageRoot, reason: "no class folders") }
        for (label, wnid) in wnids.enumerated() {
            guard let name = nameOf[wnid] else {
                throw DataError.splitFile(file: classFile, reason: "no class name for folder \(wnid) of \(imageRoot)")
            }
            classNames.append(spec.classNames.apply(name))
            for file in try jpegFiles(in: joinPath(imageRoot, wnid)) {
                samples.append(Sample(path: "\(wnid)/\(file)", label: label))
            }
        }
    }
    guard !samples.isEmpty else { throw DataError.layout(path: imageRoot, reason: "no images in its class folders") }
    return DatasetSplits(
        name: spec.name, imageRoot: imageRoot, train: samples, val: samples, test: samples, classNames: classNames)
}

// MARK: - Image folder

/// `root/<class>/*.jpg`: labels from the sorted class folder names. With `root/train`,
/// `root/test` (and optionally `root/val`) present, each is such a folder and gives that split
/// (val falls back to test). Otherwise the single folder is every split: good for zero-shot
/// evaluation or a smoke run, but then test accuracy is not held out.
func readImageFolder(spec: DatasetSpec, imageRoot: String) throws -> DatasetSplits {
    let splitDirs = ["train", "val", "test"].map { joinPath(imageRoot, $0) }
    let hasSplits = ConfigLocator.isDirectory(splitDirs[0]) && ConfigLocator.isDirectory(splitDirs[2])
    let roots = hasSplits ? splitDirs.filter(ConfigLocator.isDirectory) : [imageRoot]
    let classes = Array(Set(try roots.flatMap { try subfolders(of: $0) })).sorted()
    guard !classes.isEmpty else { throw DataError.layout(path: imageRoot, reason: "no class folders with images") }
    let labelOf = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
    func read(_ prefix: String) throws -> [Sample] {
        let dir = joinPath(imageRoot, prefix)
        var samples: [Sample] = []
        for folder in try subfolders(of: dir) {
            for file in try jpegFiles(in: joinPath(dir, folder)) {
                samples.append(
                    Sample(
                        path: prefix.isEmpty ? "\(folder)/\(file)" : "\(prefix)/\(folder)/\(file)",
                        label: labelOf[folder] ?? 0))
            }
        }
        guard !samples.isEmpty else {
            throw DataError.layout(path: dir, reason: "no .jpg, .jpeg or .png images in its class folders")
        }
        return samples
    }
    let train: [Sample], val: [Sample], test: [Sample]
    if hasSplits {
        train = try read("train")
        test = try read("test")
        val = ConfigLocator.isDirectory(splitDirs[1]) ? try read("val") : test
    } else {
        train = try read("")
        val = train
        test = train
    }
    return DatasetSplits(
        name: spec.name, imageRoot: imageRoot, train: train, val: val, test: test,
        classNames: classes.map(spec.classNames.apply))
}

// MARK: - Paths

/// Visible subfolders, sorted by name (byte order, like Python's sorted()).
func subfolders(of dir: String) throws -> [String] {
    let entries: [String]
    do { entries = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
        throw DataError.layout(path: dir, reason: "cannot list the folder")
    }
    return entries.filter { !$0.hasPrefix(".") && ConfigLocator.isDirectory(joinPath(dir, $0)) }
        .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
}

/// Visible image files (`.jpg`, `.jpeg`, `.png`, any case), sorted by name.
func jpegFiles(in dir: String) throws -> [String] {
    let entries: [String]
    do { entries = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
        throw DataError.layout(path: dir, reason: "cannot list the folder")
    }
    return entries.filter { !$0.hasPrefix(".") && ImageFile.hasImageExtension($0) }.sorted {
        $0.utf8.lexicographicallyPrecedes($1.utf8)
    }
}

func joinPath(_ base: String, _ relative: String) -> String {
    if relative.isEmpty { return base }
    if relative.hasPrefix("/") || base.isEmpty { return relative }
    return base.hasSuffix("/") ? base + relative : base + "/" + relative
}

/// A path made absolute against the working directory (`.` and `..` removed); unchanged when absolute.
public func absolutePath(_ path: String) -> String {
    ((path.hasPrefix("/") ? path : joinPath(FileManager.default.currentDirectoryPath, path)) as NSString)
        .standardizingPath
}
