// Checks on a run's lists before the first step, so a bad list costs seconds, not a trained run:
// empty lists, classes without training images, paths that leave the dataset, test images among
// the training images, and images that are missing or not regular files (a cheap stat, no decode).
import Foundation

public enum InputChecks {
    /// Every sample of `samples` names a regular file inside `imageRoot` (symbolic links resolved:
    /// a dataset folder may be a link, but no entry may lead out of it). Throws on the first bad one.
    public static func images(_ samples: [Sample], imageRoot: String, list: String) throws {
        let root = resolved(imageRoot) ?? imageRoot
        let prefix = root.hasSuffix("/") ? root : root + "/"
        for sample in samples {
            let path = joinPath(imageRoot, sample.path)
            try lexicallyInside(sample.path, list: list, file: path)
            var info = stat()
            guard stat(path, &info) == 0 else {
                throw DataError.listedImage(file: path, list: list, reason: String(cString: strerror(errno)))
            }
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                throw DataError.listedImage(file: path, list: list, reason: "not a regular file")
            }
            guard let real = resolved(path), real.hasPrefix(prefix) else {
                throw DataError.listedImage(
                    file: path, list: list, reason: "leads outside the dataset's image folder \(root)")
            }
        }
    }

    /// A split path must be relative and may not climb out of the image folder (`../x`, `a/../../x`).
    static func lexicallyInside(_ relative: String, list: String, file: String) throws {
        guard !relative.isEmpty, !relative.hasPrefix("/") else {
            throw DataError.listedImage(
                file: file, list: list, reason: "split paths must be relative to the image folder")
        }
        var depth = 0
        for part in relative.split(separator: "/", omittingEmptySubsequences: true) {
            if part == ".." { depth -= 1 } else if part != "." { depth += 1 }
            if depth < 0 {
                throw DataError.listedImage(
                    file: file, list: list, reason: "the path leaves the dataset's image folder")
            }
        }
    }

    /// Training needs images, and every class needs at least one of them.
    public static func trainingList(_ train: [Sample], classNames: [String], list: String) throws {
        guard !train.isEmpty else { throw DataError.invalidArgument("\(list) is empty: nothing to train on") }
        var seen = Array(repeating: false, count: classNames.count)
        for sample in train where seen.indices.contains(sample.label) { seen[sample.label] = true }
        let missing = seen.indices.filter { !seen[$0] }
        if !missing.isEmpty {
            let names = missing.prefix(5).map { "\($0) '\(classNames[$0])'" }.joined(separator: ", ")
            throw DataError.invalidArgument(
                "\(list) has no image of \(missing.count) class(es): \(names)"
                    + (missing.count > 5 ? ", …" : ""))
        }
    }

    /// No image may be both a training and a test image (a few-shot file built from the test
    /// split, or an image folder without train/test subfolders).
    public static func disjoint(train: [Sample], test: [Sample], trainList: String, testList: String) throws {
        let testPaths = Set(test.map { normalized($0.path) })
        if let shared = train.first(where: { testPaths.contains(normalized($0.path)) }) {
            let count = train.filter { testPaths.contains(normalized($0.path)) }.count
            throw DataError.invalidArgument(
                "\(count) image(s) of \(trainList) are also in \(testList) (e.g. \(shared.path)); "
                    + "training on test images would make the test accuracy meaningless")
        }
    }

    static func normalized(_ path: String) -> String { (path as NSString).standardizingPath }

    static func resolved(_ path: String) -> String? {
        guard let pointer = realpath(path, nil) else { return nil }
        defer { free(pointer) }
        return String(cString: pointer)
    }
}
