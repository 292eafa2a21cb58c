// Hostile and careless input through the real binary: YAML nested thousands of levels deep or
// built as an alias bomb (in --config, --dataset and --set), FIFOs in place of files, and the
// inputs the fuzzers found. Each must be one `error:` line and exit status 1, never a crash or a hang.
import Foundation
import Testing

@testable import Training

private func deepList(_ depth: Int) -> String {
    String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
}

/// "Billion laughs" under `key`: 9^9 scalars once expanded.
private func aliasBomb(key: String) -> String {
    var lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in 1...8 {
        lines.append(
            "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ", ") + "]")
    }
    lines.append("\(key): *a8")
    return lines.joined(separator: "\n") + "\n"
}

/// The one line a failed command prints, after checking it failed cleanly (status 1, not a signal).
private func singleErrorLine(_ r: ProcessResult, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    #expect(r.status == 1, "exit \(r.status): \(r.stderr.prefix(500))", sourceLocation: sourceLocation)
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1, "\(r.stderr.prefix(500))", sourceLocation: sourceLocation)
    #expect(r.stderr.count < 400, "\(r.stderr.prefix(500))", sourceLocation: sourceLocation)
    return lines.first.map(String.init) ?? ""
}

@Suite struct HostileInputTests {
    @Test func deepConfigYAMLIsOneErrorLine() throws {
        let dir = temporaryDirectory("deep-config")
        let config = dir + "/deep.yaml"
        try ("train:\n  epochs: " + deepList(5000) + "\n").write(toFile: config, atomically: true, encoding: .utf8)
        let r = try cavptDist([
            "train", "--config", config, "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot,
            "--model", tinyRun.model, "--output", dir + "/run",
        ])
        #expect(singleErrorLine(r) == "error: \(config): nests deeper than 64 levels (line 2)")
    }

    @Test func deepDatasetYAMLIsOneErrorLine() throws {
        let dir = temporaryDirectory("deep-dataset")
        let dataset = dir + "/deep.yaml"
        // Indentation nesting, as a careless generator would write it.
        let text =
            "dataset:\n" + (1..<3000).map { String(repeating: " ", count: $0) + "k\($0):" }.joined(separator: "\n")
            + " 1\n"
        try text.write(toFile: dataset, atomically: true, encoding: .utf8)
        for command in ["train", "fewshot", "fewshot --config"] {
            var arguments = [
                String(command.prefix { $0 != " " }), command.hasSuffix("--config") ? "--config" : "--dataset",
                dataset, "--data-root", tinyRun.dataRoot,
            ]
            arguments +=
                command == "train"
                ? ["--model", tinyRun.model, "--output", dir + "/run"] : ["--seed", "1", "--out", dir + "/f.json"]
            let line = singleErrorLine(try cavptDist(arguments))
            #expect(
                line.hasPrefix("error: ") && line.contains(dataset) && line.contains("nests deeper than 64 levels"),
                "\(line)")
        }
    }

    @Test func deepSetValueIsOneErrorLine() throws {
        let r = try cavptDist([
            "train", "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot, "--model", tinyRun.model,
            "--output", temporaryDirectory("deep-set") + "/run", "--set", "cavpt.layers=" + deepList(5000),
        ])
        #expect(singleErrorLine(r) == "error: --set cavpt.layers: the value nests deeper than 64 levels (line 1)")
    }

    @Test func aliasBombsAreOneErrorLine() throws {
        let dir = temporaryDirectory("alias-bomb")
        let config = dir + "/bomb.yaml"
        try aliasBomb(key: "cavpt:\n  layers").write(toFile: config, atomically: true, encoding: .utf8)
        let common = [
            "train", "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot, "--model", tinyRun.model,
            "--output", dir + "/run",
        ]
        #expect(
            singleErrorLine(try cavptDist(common + ["--config", config]))
                == "error: \(config): expands to more than 100000 nodes through aliases (line 6)")
        let inline = "{" + aliasBomb(key: "b").split(separator: "\n").joined(separator: ", ") + "}"
        #expect(
            singleErrorLine(try cavptDist(common + ["--set", "cavpt.layers=" + inline]))
                == "error: --set cavpt.layers: the value expands to more than 100000 nodes through aliases (line 1)")
    }

    @Test func hugeValuesAreQuotedInPart() throws {
        // Under Linux's 128 KiB limit on one argument.
        let value = String(repeating: "9x", count: 50_000)
        let r = try cavptDist([
            "train", "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot, "--model", tinyRun.model,
            "--output", temporaryDirectory("huge-value") + "/run", "--set", "train.epochs=" + value,
        ])
        let line = singleErrorLine(r)
        #expect(line == "error: --set: config key 'train.epochs' must be an integer ≥ 0, got '\(value.prefix(80))…'")
        let key = String(repeating: "k", count: 100_000)
        #expect(
            singleErrorLine(try cavptDist(["train", "--dataset", tinyRun.datasetYAML, "--set", key + "=1"]))
                == "error: --set: unknown config key '\(key.prefix(80))…'")
    }

    @Test func fifoConfigIsRefused() throws {
        let dir = temporaryDirectory("fifo-config")
        let fifo = dir + "/config.yaml"
        try #require(mkfifo(fifo, 0o644) == 0)
        // runProcess kills a hung child after the timeout; the expectations then fail.
        let r = try runProcess(binaryPath, ["train", "--config", fifo, "--dataset", tinyRun.datasetYAML], timeout: 120)
        #expect(singleErrorLine(r) == "error: \(fifo): cannot read config file: not a regular file (a FIFO)")
    }

    @Test func fifoEvalConfigAndCheckpointStateAreRefused() throws {
        // A run directory whose config.yaml, and a checkpoint whose state.json, are FIFOs.
        let dir = temporaryDirectory("fifo-eval")
        let checkpoint = dir + "/epoch-0001"
        try FileManager.default.createDirectory(atPath: checkpoint, withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: checkpoint + "/state.safetensors"))
        try #require(mkfifo(dir + "/config.yaml", 0o644) == 0 && mkfifo(checkpoint + "/state.json", 0o644) == 0)
        let eval = try runProcess(binaryPath, ["eval", "--run", dir], timeout: 120)
        #expect(singleErrorLine(eval) == "error: \(dir)/config.yaml: not a regular file (a FIFO)")
        var arguments = tinyRun.trainArguments(method: "vpt_shallow", output: dir + "/run", epochs: 1)
        arguments += ["--resume-from", checkpoint]
        let train = try runProcess(binaryPath, arguments, timeout: 120)
        #expect(singleErrorLine(train) == "error: \(checkpoint)/state.json: not a regular file (a FIFO)")
    }

    @Test func fifoFilesInARunFolderAreErrorsForPlotAndReport() throws {
        // Files that plot and report read back from run folders, each replaced by a FIFO.
        let dir = temporaryDirectory("fifo-readback") + "/run"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try #require(mkfifo(dir + "/metrics.jsonl", 0o644) == 0)
        let plot = try runProcess(binaryPath, ["plot", "--run", dir, "--out", dir + "/../curves.svg"], timeout: 120)
        #expect(singleErrorLine(plot) == "error: \(dir)/metrics.jsonl: not a regular file (a FIFO)")
        try Data(#"{"accuracy": 0.5}"#.utf8).write(to: URL(fileURLWithPath: dir + "/results.json"))
        try #require(mkfifo(dir + "/config.yaml", 0o644) == 0)
        let report = try runProcess(binaryPath, ["report", dir], timeout: 120)
        #expect(
            singleErrorLine(report)
                == "error: \(dir): results.json without a readable config.yaml (not a regular file (a FIFO))")
    }

    @Test func fifoImageIsAnErrorNotAHang() throws {
        // A copy of the tiny dataset with one training image replaced by a FIFO.
        let dir = temporaryDirectory("fifo-image")
        let dataRoot = dir + "/data"
        try FileManager.default.copyItem(atPath: tinyRun.dataRoot, toPath: dataRoot)
        let classFolder = dataRoot + "/synthetic/images/red_disc"
        let image = try FileManager.default.contentsOfDirectory(atPath: classFolder).sorted()[0]
        try FileManager.default.removeItem(atPath: classFolder + "/" + image)
        try #require(mkfifo(classFolder + "/" + image, 0o644) == 0)
        var arguments = tinyRun.trainArguments(method: "vpt_shallow", output: dir + "/run", epochs: 1)
        arguments[arguments.firstIndex(of: "--data-root")! + 1] = dataRoot
        arguments[arguments.firstIndex(of: "--dataset")! + 1] = dataRoot + "/synthetic.yaml"
        // Every sample drawn (shots 100 > images per class) so the FIFO is read in epoch 1.
        arguments += ["--set", "train.shots=100"]
        let r = try runProcess(binaryPath, arguments, timeout: 300)
        #expect(r.status == 1, "exit \(r.status): \(r.stderr.suffix(500))")
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error: ") }
        #expect(errors.count == 1, "\(r.stderr.suffix(500))")
        let line = errors.first.map(String.init) ?? ""
        #expect(line.contains("red_disc/\(image)") && line.contains("not a regular file"), "\(line)")
    }

    /// Inputs that crashed FuzzConfig (Tests/Fixtures/fuzz/FuzzConfig/), replayed through the
    /// config loaders; each must be a one-line error or load.
    @Test func fuzzConfigRegressions() throws {
        let dir = packageRoot + "/Tests/Fixtures/fuzz/FuzzConfig"
        let inputs = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(!inputs.isEmpty)
        for name in inputs {
            var options = RunOptions()
            options.configFile = dir + "/" + name
            do { _ = try RunSetup.config(options) } catch {
                #expect(!String(describing: error).contains("\n"), "\(name)")
            }
        }
        // The first crash: a mapping used as a mapping key, which Yams.load traps on.
        let r = try cavptDist([
            "train", "--config", dir + "/complex-key-yams-trap.yaml", "--dataset", tinyRun.datasetYAML,
        ])
        #expect(
            singleErrorLine(r).hasSuffix(
                "has a mapping key that is a list or mapping (line 3); keys must be plain names"))
    }

    @Test func deepCheckpointStateIsAnError() throws {
        let checkpoint = temporaryDirectory("deep-state") + "/epoch-0001"
        try FileManager.default.createDirectory(atPath: checkpoint, withIntermediateDirectories: true)
        try ("{\"epoch\": " + deepList(100_000) + "}").write(
            toFile: checkpoint + "/state.json", atomically: true, encoding: .utf8)
        do {
            _ = try Checkpoints.read(checkpoint)
            Issue.record("a 100000-deep state.json was accepted")
        } catch {
            let message = String(describing: error)
            #expect(message.contains(checkpoint + "/state.json"), "\(message)")
            #expect(message.count < 600, "\(message.prefix(600))")
        }
    }
}
