// Hostile and careless input files for the data layer: YAML nesting and alias bombs, deep JSON,
// FIFOs and folders where a file should be, and the inputs the fuzzers found.
import Files
import Foundation
import Testing

@testable import Data

/// Text nested `depth` levels of flow lists: `[[[...]]]`.
func deepFlowList(_ depth: Int) -> String {
    String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
}

/// Block mappings nested by indentation, `depth` levels under `key`.
func deepBlockMapping(_ depth: Int, key: String = "train") -> String {
    (0..<depth).map { String(repeating: " ", count: $0) + ($0 == 0 ? key : "k\($0)") + ":" }.joined(separator: "\n")
        + " 1\n"
}

/// "Billion laughs": nine levels of nine aliases each, 9^9 scalars once expanded.
func aliasBomb(key: String = "train") -> String {
    var lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in 1...8 {
        lines.append(
            "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ", ") + "]")
    }
    lines.append("\(key): *a8")
    return lines.joined(separator: "\n") + "\n"
}

/// Runs `body` on a thread and waits at most `seconds` for it; a hang fails the test instead of
/// hanging it, and `unblock` then releases the stuck thread. (A hang guard, not a speed check.)
func finishes<T: Sendable>(
    within seconds: Double, unblock: () -> Void = {},
    _ body: @escaping @Sendable () -> T
) -> T? {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: T?
    let thread = Thread {
        result = body()
        done.signal()
    }
    thread.start()
    if done.wait(timeout: .now() + seconds) == .timedOut {
        unblock()
        done.wait()
        return nil
    }
    return result
}

/// Opens and closes the FIFO's write end, which releases a reader blocked in open().
func releaseFIFO(_ path: String) {
    let fd = open(path, O_RDWR | O_NONBLOCK)
    if fd >= 0 { close(fd) }
}

@Suite struct YAMLLimitTests {
    @Test func shippedConfigsAreWithinTheLimits() throws {
        for folder in ["datasets", "methods"] {
            let dir = packageRoot + "/configs/" + folder
            for name in try FileManager.default.contentsOfDirectory(atPath: dir) where name.hasSuffix(".yaml") {
                let text = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
                #expect(YAMLLimits.violation(in: text) == nil, "\(folder)/\(name)")
            }
        }
        // Anchors, aliases and merge keys of ordinary size are fine.
        #expect(YAMLLimits.violation(in: "a: &x {epochs: 2}\ntrain: *x\noptim: {<<: *x, momentum: 0.5}\n") == nil)
        #expect(YAMLLimits.violation(in: deepFlowList(YAMLLimits.maxDepth - 1)) == nil)
        #expect(YAMLLimits.violation(in: "") == nil)
    }

    @Test func deepNestingIsRefusedWithTheLine() {
        #expect(
            YAMLLimits.violation(in: "train:\n  epochs: " + deepFlowList(5000))
                == "nests deeper than 64 levels (line 2)")
        #expect(
            YAMLLimits.violation(in: deepFlowList(YAMLLimits.maxDepth + 1)) == "nests deeper than 64 levels (line 1)")
        #expect(YAMLLimits.violation(in: deepBlockMapping(200))?.hasPrefix("nests deeper than 64 levels") == true)
        #expect(
            YAMLLimits.violation(in: String(repeating: "- ", count: 3000) + "x\n")?.hasPrefix("nests deeper") == true)
        // Depth counts after alias expansion: each alias adds the anchored node's levels.
        let chained = (0..<3).map {
            "a\($0): &a\($0) " + String(repeating: "[", count: 30) + ($0 == 0 ? "1" : "*a\($0 - 1)")
                + String(repeating: "]", count: 30)
        }.joined(separator: "\n")
        #expect(YAMLLimits.violation(in: chained)?.hasPrefix("nests deeper than 64 levels (line 3)") == true)
    }

    @Test func aliasBombIsRefused() {
        #expect(YAMLLimits.violation(in: aliasBomb()) == "expands to more than 100000 nodes through aliases (line 6)")
    }

    @Test func collectionKeysAreRefused() {
        // Yams.load traps on these (found by FuzzConfig).
        #expect(
            YAMLLimits.violation(in: "? [a, b]\n: 1\n")?.hasPrefix(
                "has a mapping key that is a list or mapping (line 1)") == true)
        #expect(
            YAMLLimits.violation(in: "x: &m {a: 1}\n? *m\n: 2\n")?.hasPrefix("has a mapping key that is a list") == true
        )
        #expect(YAMLLimits.violation(in: "{[1]: 2}")?.hasPrefix("has a mapping key") == true)
        // Sequences of mappings and mappings as values are ordinary.
        #expect(YAMLLimits.violation(in: "- {a: 1}\n- b: [1, {c: 2}]\n") == nil)
    }

    @Test func datasetYAMLErrorsAreOneShortLine() throws {
        for (text, expected) in [
            (
                "dataset:\n  name: " + deepFlowList(4000) + "\n",
                "dataset config d.yaml: nests deeper than 64 levels (line 2)"
            ),
            (
                aliasBomb(key: "dataset"),
                "dataset config d.yaml: expands to more than 100000 nodes through aliases (line 6)"
            ),
            (deepBlockMapping(3000, key: "dataset"), "dataset config d.yaml: nests deeper than 64 levels (line 64)"),
        ] {
            let error = thrownError { try DatasetSpec(yaml: text, file: "d.yaml") }
            #expect(error.map { String(describing: $0) } == expected)
        }
        // A syntax error on a megabyte-long line is echoed only in part.
        let long = "dataset: {name: \"" + String(repeating: "x", count: 1 << 20) + "\n"
        let message = thrownError { try DatasetSpec(yaml: long, file: "d.yaml") }.map { String(describing: $0) } ?? ""
        #expect(message.hasPrefix("dataset config d.yaml: not valid YAML"))
        #expect(message.count < 300 && !message.contains("\n"), "\(message.prefix(400))")
        let template =
            "dataset: {name: n, layout: image-folder, folder: f, template: \"" + String(repeating: "y", count: 100_000)
            + "\"}"
        let noBraces =
            thrownError { try DatasetSpec(yaml: template, file: "d.yaml") }.map { String(describing: $0) } ?? ""
        #expect(noBraces.contains("has no {} for the class name") && noBraces.count < 300)
    }
}

@Suite struct NonRegularFileTests {
    @Test func fifoInPlaceOfAnImageIsAnErrorNotAHang() throws {
        let dir = try makeTemporaryFolder("fifo")
        defer { removeTemporaryFolder(dir) }
        let fifo = dir + "/image.jpg"
        try #require(mkfifo(fifo, 0o644) == 0)
        let message = finishes(within: 60, unblock: { releaseFIFO(fifo) }) {
            thrownError { try JPEG.decode(path: fifo) }.map { String(describing: $0) }
        }
        #expect(message == .some("\(fifo): not a regular file (a FIFO)"))
    }

    @Test func foldersAndDevicesAreRefused() throws {
        let dir = try makeTemporaryFolder("folder")
        defer { removeTemporaryFolder(dir) }
        #expect(
            thrownError { try JPEG.decode(path: dir) }.map { String(describing: $0) }
                == "\(dir): not a regular file (a folder)")
        #expect(
            thrownError { try JPEG.decode(path: "/dev/null") }.map { String(describing: $0) }
                == "/dev/null: not a regular file (a character device)")
        #expect(
            thrownError { try JPEG.decode(path: dir + "/missing.jpg") }.map { String(describing: $0) }
                == "\(dir)/missing.jpg: cannot open: No such file or directory")
    }

    @Test func fifoInPlaceOfSplitFewShotOrDatasetFiles() throws {
        let dir = try makeTemporaryFolder("fifo-lists")
        defer { removeTemporaryFolder(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/d/images", withIntermediateDirectories: true)
        for name in ["d/split.json", "fewshot.json", "dataset.yaml"] {
            try #require(mkfifo(dir + "/" + name, 0o644) == 0)
        }
        let spec = DatasetSpec(
            name: "d", layout: .coopSplit, folder: "d", images: "images", splitFile: "split.json", template: "{}")
        let messages = finishes(
            within: 60,
            unblock: { for n in ["d/split.json", "fewshot.json", "dataset.yaml"] { releaseFIFO(dir + "/" + n) } }
        ) {
            [
                thrownError { try loadDataset(spec: spec, dataRoot: dir) },
                thrownError { try FewShotLists.read(from: dir + "/fewshot.json") },
                thrownError { try DatasetSpec(contentsOf: dir + "/dataset.yaml") },
            ].map { $0.map { String(describing: $0) } }
        }
        #expect(
            messages == [
                "split file \(dir)/d/split.json: not a regular file (a FIFO)",
                "few-shot file \(dir)/fewshot.json: not a regular file (a FIFO)",
                "dataset config \(dir)/dataset.yaml: not a regular file (a FIFO)",
            ])
    }
}

@Suite struct DeepJSONTests {
    @Test func deepSplitJSONIsAnError() throws {
        let dir = try makeTemporaryFolder("deep-split")
        defer { removeTemporaryFolder(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/d/images", withIntermediateDirectories: true)
        try writeFile(dir + "/d/split.json", "{\"train\": " + deepFlowList(100_000) + ", \"val\": [], \"test\": []}")
        let spec = DatasetSpec(
            name: "d", layout: .coopSplit, folder: "d", images: "images", splitFile: "split.json", template: "{}")
        let message = thrownError { try loadDataset(spec: spec, dataRoot: dir) }.map { String(describing: $0) } ?? ""
        #expect(message.hasPrefix("split file \(dir)/d/split.json: not valid JSON"), "\(message)")
        #expect(!message.contains("\n"))
        // Just under Foundation's 512-level limit: parsed, then refused as a malformed entry, echoed in part.
        try writeFile(dir + "/d/split.json", "{\"train\": [" + deepFlowList(500) + "], \"val\": [], \"test\": []}")
        let shallow = thrownError { try loadDataset(spec: spec, dataRoot: dir) }.map { String(describing: $0) } ?? ""
        #expect(shallow.contains("train[0] is not [relative path, label >= 0, class name]"), "\(shallow)")
        #expect(shallow.count < 250, "\(shallow)")
    }

    @Test func deepFewShotJSONIsAnError() throws {
        let dir = try makeTemporaryFolder("deep-fewshot")
        defer { removeTemporaryFolder(dir) }
        try writeFile(
            dir + "/f.json",
            "{\"dataset\": \"d\", \"shots\": 1, \"seed\": 1, \"train\": " + deepFlowList(100_000) + ", \"val\": []}")
        let message = thrownError { try FewShotLists.read(from: dir + "/f.json") }.map { String(describing: $0) } ?? ""
        #expect(message.hasPrefix("few-shot file \(dir)/f.json: "), "\(message)")
        #expect(!message.contains("\n") && message.count < 300)
    }
}

/// Inputs that crashed a fuzzer (Tests/Fixtures/fuzz/<target>/), replayed through the same parsers.
@Suite struct FuzzRegressionTests {
    static func inputs(_ target: String) -> [String] {
        let dir = packageRoot + "/Tests/Fixtures/fuzz/" + target
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted().map { dir + "/" + $0 }
    }

    @Test func splitAndFewShotInputs() throws {
        let dir = try makeTemporaryFolder("fuzz-split")
        defer { removeTemporaryFolder(dir) }
        try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
        let spec = DatasetSpec(
            name: "fuzz", layout: .coopSplit, folder: "", images: "images", splitFile: "split.json", template: "{}")
        for input in Self.inputs("FuzzSplitJSON") {
            try? FileManager.default.removeItem(atPath: dir + "/split.json")
            try FileManager.default.copyItem(atPath: input, toPath: dir + "/split.json")
            _ = try? loadDataset(spec: spec, dataRoot: dir)
            _ = try? FewShotLists.read(from: dir + "/split.json")
        }
    }

    @Test func jpegInputs() throws {
        for input in Self.inputs("FuzzJPEG") {
            let bytes = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: input)))
            _ = try? JPEG.decode(data: bytes, name: input)
        }
    }
}
