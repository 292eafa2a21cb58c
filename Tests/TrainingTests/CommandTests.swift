// The model-facing commands through the real binary: values against the PyTorch goldens, and
// one-line errors with a non-zero exit on bad input.
import CLIP
import Files
import Foundation
import Tensor
import Testing

@Suite struct CommandTests {
    @Test func featuresMatchPyTorch() throws {
        let texts = try JSONDecoder().decode(
            [String].self, from: Data(contentsOf: URL(fileURLWithPath: goldenDirectory + "/tiny_a_texts.json")))
        let golden = try SafeTensorsFile(path: goldenDirectory + "/tiny_a_features.safetensors")
        for (weights, prefix) in [("tiny_a_openai.safetensors", ""), ("tiny_a_hf_f16.safetensors", "hf_")] {
            let out = temporaryDirectory("features") + "/f.safetensors"
            let r = try cavptDist(
                [
                    "features", "--model", goldenDirectory + "/" + weights, "--vocab",
                    goldenDirectory + "/tiny_vocab.txt.gz",
                    "--pixels", goldenDirectory + "/tiny_a_features.safetensors", "--out", out, "--save-pixels",
                    "--texts",
                ] + texts)
            try #require(r.status == 0, "\(r.stderr)")
            let f = try SafeTensorsFile(path: out)
            for key in ["image_features", "text_features", "logits"] {
                let err = relativeError(try f.tensor(key), try golden.tensor(prefix + key))
                #expect(err < 1e-4, "\(weights) \(key): \(err)")
            }
            #expect(try f.tensor("pixels").scalars == golden.tensor("pixels").scalars)
        }
    }

    @Test func featuresFromJPEGs() throws {
        let images = try FileManager.default.contentsOfDirectory(
            atPath: tinyRun.dataRoot + "/synthetic/images/red_disc"
        )
        .sorted().prefix(2).map { tinyRun.dataRoot + "/synthetic/images/red_disc/" + $0 }
        let out = temporaryDirectory("jpeg-features") + "/f.safetensors"
        let r = try cavptDist(
            ["features", "--model", tinyRun.model, "--images"] + images + [
                "--texts", "a photo of a red disc.", "--out", out,
            ])
        try #require(r.status == 0, "\(r.stderr)")
        let f = try SafeTensorsFile(path: out)
        #expect(f.shape("image_features") == [2, 64])
        #expect(f.shape("logits") == [2, 1])
    }

    @Test func tokenizeCommand() throws {
        let r = try cavptDist(["tokenize", "--vocab", goldenDirectory + "/tiny_vocab.txt.gz", "a photo", "of a dog."])
        try #require(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        let tokenizer = try CLIPTokenizer(bpeGzPath: goldenDirectory + "/tiny_vocab.txt.gz")
        #expect(lines[0].split(separator: " ").compactMap { Int($0) } == tokenizer.tokenize("a photo"))
    }

    @Test func fewshotCommandIsDeterministic() throws {
        let dir = temporaryDirectory("fewshot")
        var outputs: [Data] = []
        for (seed, name) in [(1, "a"), (1, "b"), (2, "c")] {
            let r = try cavptDist([
                "fewshot", "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot, "--seed", String(seed),
                "--set", "train.shots=2", "--out", dir + "/\(name).json",
            ])
            try #require(r.status == 0, "\(r.stderr)")
            outputs.append(try Data(contentsOf: URL(fileURLWithPath: dir + "/\(name).json")))
        }
        #expect(outputs[0] == outputs[1])
        #expect(outputs[0] != outputs[2])
        let lists = try JSONSerialization.jsonObject(with: outputs[0]) as! [String: Any]
        #expect((lists["train"] as! [Any]).count == 4 * 2)
    }

    @Test func zeroshotCommand() throws {
        let r = try cavptDist([
            "zeroshot", "--model", tinyRun.model, "--dataset", tinyRun.datasetYAML, "--data-root", tinyRun.dataRoot,
        ])
        try #require(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("zero-shot synthetic test: accuracy"))
        #expect(r.stdout.contains("(16 images"))
    }

    @Test func malformedWeightsGiveOneLineErrors() throws {
        let dir = temporaryDirectory("badweights")
        let good = try Data(contentsOf: URL(fileURLWithPath: goldenDirectory + "/tiny_a_openai.safetensors"))
        var cases: [(String, Data, String)] = [
            ("truncated.safetensors", good.prefix(good.count / 2), "truncated.safetensors"),
            ("short.safetensors", Data([1, 2, 3]), "short.safetensors"),
        ]
        var huge = good
        huge.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Data($0) })
        cases.append(("header.safetensors", huge, "header.safetensors"))
        for (name, bytes, needle) in cases {
            try bytes.write(to: URL(fileURLWithPath: dir + "/" + name))
            let r = try cavptDist([
                "features", "--model", dir + "/" + name, "--pixels", goldenDirectory + "/tiny_a_features.safetensors",
                "--out", dir + "/out.safetensors",
            ])
            #expect(r.status == 1, "\(name)")
            let errors = r.stderr.split(separator: "\n")
            #expect(
                errors.count == 1 && errors[0].hasPrefix("error: ") && errors[0].contains(needle),
                "\(name): \(r.stderr)")
        }
        // A model missing a tensor: strict loading names it.
        let file = try SafeTensorsFile(path: goldenDirectory + "/tiny_a_openai.safetensors")
        let kept = try file.names.filter { $0 != "visual.proj" && $0 != "attn_mask" }.map { ($0, try file.tensor($0)) }
        try SafeTensorsFile.write(kept, to: dir + "/missing.safetensors")
        let r = try cavptDist([
            "features", "--model", dir + "/missing.safetensors", "--pixels",
            goldenDirectory + "/tiny_a_features.safetensors",
            "--out", dir + "/out.safetensors",
        ])
        #expect(r.status == 1)
        #expect(r.stderr.contains("visual.proj") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    }

    @Test func wrongPixelShapeIsAnError() throws {
        let dir = temporaryDirectory("badpixels")
        try SafeTensorsFile.write([("pixels", Tensor(zeros: [2, 3, 16, 16]))], to: dir + "/p.safetensors")
        let r = try cavptDist([
            "features", "--model", goldenDirectory + "/tiny_a_openai.safetensors", "--pixels", dir + "/p.safetensors",
            "--out", dir + "/o.safetensors",
        ])
        #expect(r.status == 1)
        #expect(r.stderr.contains("expected [n, 3, 32, 32]"), "\(r.stderr)")
    }
}
