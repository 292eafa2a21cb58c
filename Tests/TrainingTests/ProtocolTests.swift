// The field's protocols through the real binary: base-to-new (train on the base half, evaluate the
// new half, CAVPT's class branch no obstacle), cross-dataset evaluation for every preset (checked
// once against an independent computation), predict agreeing with eval --predictions, and the
// report's base-to-new harmonic mean of the seed means.
import CLIP
import Files
import Foundation
import Tensor
import Testing

@testable import Training

/// A 6-class synthetic dataset (labels 0–2 base, 3–5 new), written once per test process.
let sixClasses: TinyRun = {
    let root = temporaryDirectory("sixclasses")
    let result = try? cavptDist([
        "demo", "--dir", root, "--prepare-only", "--classes", "6", "--shots", "4", "--test-per-class", "3",
    ])
    precondition(result?.status == 0, "demo --prepare-only failed: \(result?.stderr ?? "did not start")")
    return TinyRun(root: root)
}()

@Suite(.serialized) struct ProtocolTests {
    let allClasses = ["red disc", "green field", "blue sky", "yellow sand", "purple wave", "gray stone"]

    func json(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] ?? [:]
    }

    @Test(arguments: ["coop", "vpt_deep", "vlp_cavpt", "dpt_released"])
    func baseToNew(_ method: String) throws {
        let out = temporaryDirectory("b2n-\(method)") + "/run"
        let args = [
            "train", "--dataset", sixClasses.datasetYAML, "--method", method, "--data-root", sixClasses.dataRoot,
            "--model", sixClasses.model, "--output", out, "--set", "train.epochs=2", "--set", "train.batchSize=4",
            "--set", "train.shots=4", "--set", "data.subsample=base", "--set", "train.workers=1",
            "--set", "cavpt.guidanceEpochs=1",
        ]
        let trained = try cavptDist(args)
        try #require(trained.status == 0, "\(trained.stderr)")
        // Trained on exactly the 3 base classes: 3 × 4 shots per epoch, base test images only.
        #expect(trained.stdout.contains("12 training images, 3 classes"), "\(trained.stdout)")
        #expect(try metricLines(out).allSatisfy { $0["images"] as? Int == 12 })
        let results = try results(out)
        #expect(Set((results["perClassAccuracy"] as? [String: Any] ?? [:]).keys) == Set(allClasses.prefix(3)))
        #expect(results["evaluated"] as? Int == 9)
        // The new half, through the same trained tensors (CAVPT's [3, d] classifier is training-only).
        let new = try cavptDist(["eval", "--run", out, "--subsample", "new"])
        try #require(new.status == 0, "\(new.stderr)")
        #expect(new.stdout.contains("(new classes)") && new.stdout.contains("(9 images, 3 classes)"), "\(new.stdout)")
        let record = try json(out + "/evaluations/synthetic-test-new.json")
        #expect(Set((record["perClassAccuracy"] as? [String: Any] ?? [:]).keys) == Set(allClasses.suffix(3)))
        #expect(record["evaluated"] as? Int == 9 && record["subsample"] as? String == "new")
    }

    @Test(arguments: [
        "zsclip", "coop", "vpt_shallow", "vpt_deep", "vpt_cavpt", "vlp_deep", "vlp_cavpt", "dpt_released",
    ])
    func crossDataset(_ method: String) throws {
        // Train on the 4-class set, evaluate on the 6-class one (its classes, its 18 test images).
        let out = temporaryDirectory("cross-\(method)") + "/run"
        let trained = try cavptDist(
            tinyRun.trainArguments(method: method, output: out, epochs: 1, extra: ["--set", "cavpt.guidanceEpochs=0"]))
        try #require(trained.status == 0, "\(trained.stderr)")
        let other = temporaryDirectory("cross-target-\(method)") + "/other.yaml"
        try String(contentsOfFile: sixClasses.datasetYAML, encoding: .utf8).replacingOccurrences(
            of: "name: synthetic", with: "name: six"
        )
        .write(toFile: other, atomically: true, encoding: .utf8)
        let r = try cavptDist(["eval", "--run", out, "--dataset", other, "--data-root", sixClasses.dataRoot])
        try #require(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("six test accuracy") && r.stdout.contains("(18 images, 6 classes)"), "\(r.stdout)")
        let record = try json(out + "/evaluations/six-test-all.json")
        #expect(record["evaluated"] as? Int == 18 && record["trainedOn"] as? String == "synthetic")
    }

    /// eval --dataset's top-1 agrees with an independent path: the same images through `features`
    /// (test transform) and `gradients` (the trained context set with --params, the predicted labels
    /// as targets), whose loss must be −mean log p(prediction) of eval's probabilities.
    @Test func crossDatasetPredictionsAgreeWithAnIndependentComputation() throws {
        let base = temporaryDirectory("cross-check")
        let out = base + "/run"
        let trained = try cavptDist(
            tinyRun.trainArguments(method: "coop", output: out, epochs: 2, extra: ["--set", "optim.text.lr=0.05"]))
        try #require(trained.status == 0, "\(trained.stderr)")
        let predictions = base + "/predictions.jsonl"
        let r = try cavptDist([
            "eval", "--run", out, "--dataset", sixClasses.datasetYAML, "--data-root", sixClasses.dataRoot,
            "--predictions", predictions,
        ])
        try #require(r.status == 0, "\(r.stderr)")
        let lines = try String(contentsOfFile: predictions, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        let images = lines.dropLast()
        #expect(images.count == 18)
        // Confusion matrix line: rows sum to each class's test images, total 18.
        let confusion = try #require(lines.last?["confusion"] as? [[Int]])
        #expect(confusion.map { $0.reduce(0, +) } == Array(repeating: 3, count: 6))
        let imageRoot = sixClasses.dataRoot + "/synthetic/images/"
        let paths = images.map { imageRoot + ($0["path"] as! String) }
        let predicted = images.map { $0["prediction"] as! Int }
        let probability = images.map { (($0["top5"] as! [[String: Any]])[0]["probability"] as! NSNumber).doubleValue }
        let pixels = base + "/pixels.safetensors"
        let f = try cavptDist(
            ["features", "--model", sixClasses.model, "--images"] + paths + [
                "--out", base + "/f.safetensors", "--save-pixels",
            ])
        try #require(f.status == 0, "\(f.stderr)")
        let saved = try SafeTensorsFile(path: base + "/f.safetensors")
        try SafeTensorsFile.write([("pixels", try saved.tensor("pixels"))], to: pixels)
        try SafeTensorsFile.write([], integers: [("labels", predicted)], to: base + "/labels.safetensors")
        try allClasses.joined(separator: "\n").write(toFile: base + "/classes.txt", atomically: true, encoding: .utf8)
        let checkpoint = try SafeTensorsFile(path: out + "/checkpoints/epoch-0002/state.safetensors")
        try SafeTensorsFile.write([("text.ctx", try checkpoint.tensor("text.ctx"))], to: base + "/params.safetensors")
        let g = try cavptDist([
            "gradients", "--model", sixClasses.model, "--method", "coop", "--classes", base + "/classes.txt",
            "--template", "a photo of a {}.", "--pixels", pixels, "--labels", base + "/labels.safetensors",
            "--params", base + "/params.safetensors", "--out", base + "/g.safetensors",
        ])
        try #require(g.status == 0, "\(g.stderr)")
        let loss = Double(try SafeTensorsFile(path: base + "/g.safetensors").tensor("loss").scalars[0])
        let expected = -probability.map(log).reduce(0, +) / Double(probability.count)
        #expect(
            abs(loss - expected) < 1e-4 * max(1, abs(expected)),
            "gradients loss \(loss) vs eval's −mean log p \(expected)")
    }

    @Test func predictAgreesWithEvalPredictions() throws {
        let base = temporaryDirectory("predict")
        let out = base + "/run"
        let trained = try cavptDist(tinyRun.trainArguments(method: "vlp_cavpt", output: out, epochs: 2))
        try #require(trained.status == 0, "\(trained.stderr)")
        let file = base + "/predictions.jsonl"
        let e = try cavptDist(["eval", "--run", out, "--predictions", file])
        try #require(e.status == 0, "\(e.stderr)")
        let fromEval = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").dropLast().map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        let imageRoot = tinyRun.dataRoot + "/synthetic/images/"
        let p = try cavptDist(
            ["predict", "--run", out, "--out", base + "/predict.jsonl"]
                + fromEval.map { imageRoot + ($0["path"] as! String) })
        try #require(p.status == 0, "\(p.stderr)")
        let fromPredict = try String(contentsOfFile: base + "/predict.jsonl", encoding: .utf8).split(separator: "\n")
            .map {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            }
        #expect(fromPredict.count == fromEval.count && !fromEval.isEmpty)
        for (a, b) in zip(fromEval, fromPredict) {
            #expect(a["prediction"] as? Int == b["prediction"] as? Int, "\(a["path"] ?? "")")
            let pa = ((a["top5"] as! [[String: Any]])[0]["probability"] as! NSNumber).doubleValue
            let pb = ((b["top"] as! [[String: Any]])[0]["probability"] as! NSNumber).doubleValue
            #expect(abs(pa - pb) < 1e-6)
        }
        #expect(p.stdout.split(separator: "\n").count == fromEval.count)
    }
}

@Suite struct ReportTests {
    /// A finished run as `train` and `eval` leave it, with chosen accuracies.
    func fakeRun(
        _ dir: String, dataset: String, method: String, seed: Int, accuracy: Double, subsample: String = "all",
        new: Double? = nil, extra: [String] = []
    ) throws {
        try FileManager.default.createDirectory(atPath: dir + "/evaluations", withIntermediateDirectories: true)
        var c = Config()
        try c.set("dataset.name", raw: dataset, source: "t")
        try c.set("method.name", raw: method, source: "t")
        try c.set("train.seed", raw: seed, source: "t")
        try c.set("data.subsample", raw: subsample, source: "t")
        for assignment in extra { try c.apply(override: assignment) }
        try c.yaml().write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        try JSONSerialization.data(withJSONObject: ["accuracy": accuracy, "macroF1": accuracy, "shots": 16])
            .write(to: URL(fileURLWithPath: dir + "/results.json"))
        if let new {
            try JSONSerialization.data(withJSONObject: [
                "accuracy": new, "dataset": dataset, "subsample": "new", "split": "test",
            ])
            .write(to: URL(fileURLWithPath: dir + "/evaluations/\(dataset)-test-new.json"))
        }
    }

    @Test func baseToNewUsesTheHarmonicMeanOfSeedMeans() throws {
        let root = temporaryDirectory("report-b2n")
        let base = [0.80, 0.90, 0.85], new = [0.60, 0.40, 0.50]
        for seed in 1...3 {
            try fakeRun(
                root + "/eurosat/coop/seed\(seed)", dataset: "eurosat", method: "coop", seed: seed,
                accuracy: base[seed - 1], subsample: "base", new: new[seed - 1])
        }
        let json = try Report.render(try Report.collect([root]), format: .json, ci95: false)
        let tables = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [[String: Any]]
        let row = (tables[0]["rows"] as! [[String: Any]])[0]
        let eurosat = row["eurosat"] as! [String: Any]
        // HM of the means (85, 50) = 62.96…, not the mean of per-seed HMs (62.22…).
        #expect(abs((eurosat["hm"] as! Double) - 2 * 85 * 50 / 135.0) < 1e-9)
        #expect(abs((eurosat["base"] as! Double) - 85) < 1e-9 && abs((eurosat["new"] as! Double) - 50) < 1e-9)
        let markdown = try Report.render(try Report.collect([root]), format: .markdown, ci95: false)
        // Population std (CoOp's np.std) of 80, 90, 85 is 4.08; of 60, 40, 50 is 8.16.
        #expect(
            markdown.contains("85.00 ± 4.08") && markdown.contains("50.00 ± 8.16") && markdown.contains("62.96"),
            "\(markdown)")
        let ci = try Report.render(try Report.collect([root]), format: .markdown, ci95: true)
        #expect(ci.contains(String(format: "85.00 ± %.2f", 1.96 * 4.0824829 / 3.0.squareRoot())), "\(ci)")
    }

    @Test func groupsNeverMergeDifferentSettingsAndTheAverageNeedsEveryDataset() throws {
        let root = temporaryDirectory("report-groups")
        for seed in 1...3 {
            for alpha in ["0.0", "1.0"] {
                try fakeRun(
                    root + "/dtd/vlp_cavpt/a\(alpha)/seed\(seed)", dataset: "dtd", method: "vlp_cavpt", seed: seed,
                    accuracy: alpha == "0.0" ? 0.5 : 0.6, extra: ["cavpt.alpha=\(alpha)", "cavpt.topK=5"])
                try fakeRun(
                    root + "/eurosat/vlp_cavpt/a\(alpha)/seed\(seed)", dataset: "eurosat", method: "vlp_cavpt",
                    seed: seed,
                    accuracy: alpha == "0.0" ? 0.7 : 0.8, extra: ["cavpt.alpha=\(alpha)", "cavpt.topK=10"])
            }
            try fakeRun(root + "/dtd/coop/seed\(seed)", dataset: "dtd", method: "coop", seed: seed, accuracy: 0.4)
        }
        let markdown = try Report.render(try Report.collect([root]), format: .markdown, ci95: false)
        // Two rows for the alpha ablation (topK follows the dataset and names no row); coop has no
        // EuroSAT runs, so no average.
        #expect(
            markdown.contains("| vlp_cavpt [cavpt.alpha=0.0] | 16 | 70.00 ± 0.00 | 50.00 ± 0.00 | 60.00 |"),
            "\(markdown)")
        #expect(
            markdown.contains("| vlp_cavpt [cavpt.alpha=1.0] | 16 | 80.00 ± 0.00 | 60.00 ± 0.00 | 70.00 |"),
            "\(markdown)")
        #expect(markdown.contains("| coop | 16 | — | 40.00 ± 0.00 | — |"), "\(markdown)")
        // The same configuration and seed twice is refused, not averaged.
        try fakeRun(root + "/copy/seed1", dataset: "dtd", method: "coop", seed: 1, accuracy: 0.4)
        #expect(
            thrownText { _ = try Report.render(try Report.collect([root]), format: .markdown, ci95: false) }
                .contains("two runs of the same configuration and seed 1"))
    }
}
