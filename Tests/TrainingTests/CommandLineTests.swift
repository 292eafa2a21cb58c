// The command line holds no surprises: options do what they say or are refused, every error is one
// `error:` line naming the command, and run records are complete.
import Foundation
import Testing

@Suite(.serialized) struct CommandLineTests {
    func errorLines(_ r: ProcessResult) -> [Substring] {
        r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
    }

    @Test func versionAndArgumentErrorsAreOneLine() throws {
        let version = try cavptDist(["--version"])
        #expect(version.status == 0 && version.stdout.hasPrefix("cavpt-dist 0."), "\(version.stdout)")
        for (args, command, needle) in [
            (["demo", "--classes", "9"], "cavpt-dist demo", "--classes must be 2…8"),
            (["train", "--bogus"], "cavpt-dist train", "--bogus"),
            (["eval"], "cavpt-dist eval", "--run DIR"),
            (["zeroshot", "--method", "coop"], "cavpt-dist zeroshot", "--method"),
            (["frobnicate"], "cavpt-dist", "frobnicate"),
        ] {
            let r = try cavptDist(args)
            #expect(r.status != 0)
            let lines = r.stderr.split(separator: "\n")
            #expect(
                lines.count == 1 && lines[0].hasPrefix("error: \(command): ") && lines[0].contains(needle),
                "\(args): \(r.stderr)")
            #expect(!r.stderr.contains("Usage") && !r.stderr.contains("USAGE"), "\(r.stderr)")
        }
        let help = try cavptDist(["train", "--help"])
        #expect(help.status == 0 && help.stdout.contains("config --list"))
    }

    @Test func zeroshotHonoursItsOptions() throws {
        let out = temporaryDirectory("zeroshot") + "/zs.json"
        let r = try cavptDist([
            "zeroshot", "--model", tinyRun.model, "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot,
            "--set", "eval.split=val", "--out", out,
        ])
        try #require(r.status == 0, "\(r.stderr)")
        #expect(
            r.stdout.contains("zero-shot synthetic val:") && r.stdout.contains("(12 images, 4 classes"), "\(r.stdout)")
        let record =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as! [String: Any]
        #expect(
            record["split"] as? String == "val" && record["evaluated"] as? Int == 12
                && record["template"] as? String == "a photo of a {}.")
        #expect((record["perClassAccuracy"] as? [String: Any])?.count == 4)
    }

    @Test func aNamedDatasetCanBePartlyOverridden() throws {
        let dir = temporaryDirectory("override")
        let yaml = "dataset: {name: \"\(tinyRun.datasetYAML)\", template: \"a blurry photo of a {}.\"}\n"
        try yaml.write(toFile: dir + "/mine.yaml", atomically: true, encoding: .utf8)
        let r = try cavptDist([
            "train", "--config", dir + "/mine.yaml", "--method", "vpt_deep", "--data-root", tinyRun.dataRoot,
            "--model", tinyRun.model, "--output", dir + "/run", "--set", "train.epochs=1", "--set", "train.batchSize=8",
        ])
        try #require(r.status == 0, "\(r.stderr)")
        #expect(try results(dir + "/run")["template"] as? String == "a blurry photo of a {}.")
        #expect(
            try String(contentsOfFile: dir + "/run/config.yaml", encoding: .utf8).contains(
                "template: \"a blurry photo of a {}.\""))
        // --set too, checked like the definition's own.
        let set = try cavptDist([
            "zeroshot", "--model", tinyRun.model, "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot,
            "--set", "dataset.template=itap of a {}.",
        ])
        #expect(set.status == 0 && set.stdout.contains("template \"itap of a {}.\""), "\(set.stdout) \(set.stderr)")
        let bad = try cavptDist([
            "zeroshot", "--model", tinyRun.model, "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot,
            "--set", "dataset.template=no braces",
        ])
        #expect(bad.status == 1 && errorLines(bad).first?.contains("dataset.template") == true, "\(bad.stderr)")
        // What cannot be overridden in part is refused, not ignored.
        try "dataset: {name: eurosat, classNames: {replaceUnderscores: false}}\n".write(
            toFile: dir + "/part.yaml", atomically: true, encoding: .utf8)
        let refused = try cavptDist([
            "zeroshot", "--config", dir + "/part.yaml", "--model", tinyRun.model, "--data-root", tinyRun.dataRoot,
        ])
        #expect(
            refused.status == 1 && errorLines(refused).first?.contains("dataset.classNames cannot override") == true,
            "\(refused.stderr)")
    }

    @Test func trainWithoutAMethodAndAnEndlessWarmupAreCaught() throws {
        let dir = temporaryDirectory("nomethod")
        let none = try cavptDist([
            "train", "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot, "--model", tinyRun.model,
            "--output", dir + "/run", "--set", "train.epochs=1",
        ])
        #expect(none.status == 1 && errorLines(none).first?.contains("nothing to train") == true, "\(none.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/run/results.json"))
        // Two epochs inside a ten-epoch visual warm-up: warned; coop's line shows only the text rate.
        let short = try cavptDist([
            "train", "--dataset", tinyRun.datasetYAML, "--method", "vpt_deep", "--data-root", tinyRun.dataRoot,
            "--model", tinyRun.model, "--output", dir + "/short", "--set", "train.epochs=2", "--set",
            "train.batchSize=8",
        ])
        try #require(short.status == 0, "\(short.stderr)")
        #expect(
            short.stdout.contains(
                "warning: train.epochs (2) ≤ optim.visual.warmupEpochs (10): the visual learning rate stays"),
            "\(short.stdout)")
        let coop = try cavptDist(tinyRun.trainArguments(method: "coop", output: dir + "/coop", epochs: 1))
        try #require(coop.status == 0, "\(coop.stderr)")
        let progress = coop.stdout.split(separator: "\n").filter { $0.hasPrefix("epoch ") }
        #expect(
            !progress.isEmpty && progress.allSatisfy { $0.contains(" (text)") && !$0.contains("(text ") }, "\(progress)"
        )
    }

    @Test func evalTakesACheckpointAlone() throws {
        // state.json holds the configuration: --checkpoint needs no --config.
        let out = temporaryDirectory("checkpoint-alone") + "/run"
        try #require(try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 2)).status == 0)
        let accuracy = try #require(try results(out)["accuracy"] as? Double)
        let e = try cavptDist(["eval", "--checkpoint", out + "/checkpoints/epoch-0002", "--out", out + "/e.json"])
        try #require(e.status == 0, "\(e.stderr)")
        #expect(e.stdout.contains(String(format: "accuracy %.2f%%", accuracy * 100)), "\(e.stdout)")
        let record =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/e.json")))
            as! [String: Any]
        #expect(record["dataset"] as? String == "synthetic" && record["method"] as? String == "vpt_deep")
        #expect((record["perClassAccuracy"] as? [String: Any])?.count == 4 && record["checkpoint"] is String)
    }

    @Test func resultsAreComplete() throws {
        let out = temporaryDirectory("records") + "/run"
        let r = try cavptDist(tinyRun.trainArguments(method: "vlp_cavpt", output: out, epochs: 1))
        try #require(r.status == 0, "\(r.stderr)")
        let record = try results(out)
        for key in [
            "timestamp", "host", "ranks", "blasThreadsPerRank", "model", "dataset", "method", "template", "classes",
            "shots",
            "seed", "commandLine", "versions", "fewshot", "perClassAccuracy", "timing",
        ] {
            #expect(record[key] != nil, "results.json lacks \(key)")
        }
        let model = try #require(record["model"] as? [String: Any])
        #expect((model["weightsCRC32C"] as? String)?.count == 8 && model["architecture"] != nil)
        #expect((record["commandLine"] as? [String])?.contains("vlp_cavpt") == true)
        let features = try cavptDist([
            "features", "--model", tinyRun.model, "--images",
            tinyRun.dataRoot + "/synthetic/images/red_disc/red_disc_0000.jpg", "--out", out + "/f.safetensors",
        ])
        #expect(features.status == 0 && features.stdout.contains("image_features"), "\(features.stdout)")
    }
}
