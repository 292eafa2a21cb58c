// Single-process training and evaluation on the synthetic dataset, through the real binary.
import Foundation
import Testing
import Training

@Suite(.serialized) struct TrainingRuns {
    @Test(arguments: ["vpt_deep", "vlp_cavpt"])
    func trainingLearnsAndEvalReproduces(_ method: String) throws {
        let out = temporaryDirectory("learn-\(method)") + "/run"
        var args = tinyRun.trainArguments(method: method, output: out, epochs: 20, batch: 8)
        args += ["--set", "optim.visual.lr=0.05", "--set", "optim.text.lr=0.02"]
        let result = try cavptDist(args)
        try #require(result.status == 0, "\(result.stderr)")
        let epochs = try metricLines(out)
        let first = epochs.first!["loss"] as! Double, last = epochs.last!["loss"] as! Double
        #expect(last < 0.8 * first, "training loss \(first) → \(last)")
        let accuracy = try results(out)["accuracy"] as! Double
        #expect(accuracy > 0.5, "test accuracy \(accuracy) with 4 classes (chance 0.25)")
        // `eval` on the saved run reports the same accuracy.
        let evaluation = try cavptDist(["eval", "--run", out])
        try #require(evaluation.status == 0, "\(evaluation.stderr)")
        #expect(evaluation.stdout.contains(String(format: "accuracy %.2f%%", accuracy * 100)), "\(evaluation.stdout)")
    }

    @Test func resumeRefusesAChangedConfigAndEvalTakesACheckpoint() throws {
        let out = temporaryDirectory("resume-config") + "/run"
        let first = try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 2))
        try #require(first.status == 0, "\(first.stderr)")
        // A different learning rate is a different run: resuming it must name the key and keep the checkpoints.
        let changed = try cavptDist(
            tinyRun.trainArguments(
                method: "vpt_deep", output: out, epochs: 2,
                extra: ["--resume", "--set", "optim.visual.lr=0.5"]))
        #expect(changed.status == 1)
        let lines = changed.stderr.split(separator: "\n")
        #expect(
            lines.count == 1 && lines[0].contains("optim.visual.lr") && lines[0].contains("epoch-0002"),
            "\(changed.stderr)")
        #expect(FileManager.default.fileExists(atPath: out + "/checkpoints/epoch-0002/state.safetensors"))
        // Operational keys may change.
        let same = try cavptDist(
            tinyRun.trainArguments(
                method: "vpt_deep", output: out, epochs: 2,
                extra: ["--resume", "--set", "train.workers=2"]))
        #expect(same.status == 0, "\(same.stderr)")
        // eval --checkpoint --config gives the accuracy train reported.
        let accuracy = try results(out)["accuracy"] as! Double
        let evaluation = try cavptDist([
            "eval", "--checkpoint", out + "/checkpoints/epoch-0002", "--config", out + "/config.yaml",
        ])
        try #require(evaluation.status == 0, "\(evaluation.stderr)")
        #expect(evaluation.stdout.contains(String(format: "accuracy %.2f%%", accuracy * 100)), "\(evaluation.stdout)")
    }

    @Test func aUserConfigCanNameEverything() throws {
        // One YAML: a full dataset definition, the method, paths and training keys; flags not needed.
        let dir = temporaryDirectory("user-config")
        var yaml = try String(contentsOfFile: tinyRun.datasetYAML, encoding: .utf8)
        yaml += "method: {name: vpt_deep}\ndata: {root: \"\(tinyRun.dataRoot)\"}\nmodel: {path: \"\(tinyRun.model)\"}\n"
        yaml += "train: {epochs: 1, batchSize: 8}\noutput: {dir: \"\(dir)/run\"}\n"
        try yaml.write(toFile: dir + "/run.yaml", atomically: false, encoding: .utf8)
        let r = try cavptDist(["train", "--config", dir + "/run.yaml"])
        try #require(r.status == 0, "\(r.stderr)")
        var saved = Config()
        let recorded = dir + "/run/config.yaml"
        try saved.merge(
            savedRun: try String(contentsOfFile: recorded, encoding: .utf8), source: recorded, definitionFile: recorded)
        #expect(saved.settings.methodName == "vpt_deep")
        #expect(saved.settings.dataset.name == "synthetic")
        #expect(saved.settings.method.cavpt.topK == 3) // from the definition's cavpt section
        #expect(saved.settings.method.visualPrompt == .deep)
    }

    @Test func badInputsGiveOneLineErrors() throws {
        let out = temporaryDirectory("bad") + "/run"
        let cases: [([String], String)] = [
            (
                tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 1, extra: ["--set", "train.epoch=2"]),
                "unknown config key 'train.epoch'"
            ),
            (tinyRun.trainArguments(method: "nope", output: out, epochs: 1), "unknown method 'nope'"),
            (
                [
                    "train", "--dataset", tinyRun.datasetYAML, "--method", "vpt_deep", "--data-root", tinyRun.dataRoot,
                    "--model", "/nonexistent/model.safetensors", "--output", out,
                ], "/nonexistent"
            ),
        ]
        for (args, needle) in cases {
            let r = try cavptDist(args)
            #expect(r.status != 0)
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
            #expect(errors.count == 1, "\(r.stderr)")
            #expect(errors.first?.contains(needle) == true, "\(r.stderr)")
        }
    }
}
