// Attention maps equal the float64 PyTorch computation of the same attention on the tiny golden
// model (Tests/Fixtures/make_attention_fixtures.py), for zero-shot CLIP and prompted methods; the
// picture of a trained run is a PNG of the expected layout.
import CLIP
import Files
import Foundation
import Tensor
import Testing

@Suite(.serialized) struct AttentionTests {
    func g(_ name: String) -> String { goldenDirectory + "/" + name }

    @Test(arguments: ["zsclip", "vpt_shallow", "vpt_deep", "vpt_cavpt", "vlp_cavpt"])
    func mapsEqualTheReference(_ name: String) throws {
        let document =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: g("grad_cases.json"))))
            as! [String: Any]
        let cases = document["cases"] as! [[String: Any]]
        let c = try #require(cases.first { $0["name"] as? String == name })
        let out = temporaryDirectory("attention-\(name)") + "/maps.safetensors"
        var args = [
            "attention", "--model", g("tiny_a_openai.safetensors"), "--vocab", g("tiny_vocab.txt.gz"),
            "--classes", g("classes.txt"), "--template", "a photo of a {}.", "--pixels", g("grad_inputs.safetensors"),
            "--save-maps", out,
        ]
        if let params = c["params"] as? String {
            args += ["--method", c["preset"] as! String, "--params", g(params)]
            for assignment in c["set"] as? [String] ?? [] { args += ["--set", assignment] }
        }
        let r = try cavptDist(args)
        try #require(r.status == 0, "\(r.stderr)")
        let maps = try SafeTensorsFile(path: out)
        let expected = try SafeTensorsFile(path: g("attention.safetensors")).tensor("attention.\(name)")
        let actual = try maps.tensor(name == "zsclip" ? "attention" : "attention.1")
        #expect(actual.shape == expected.shape && actual.shape == [6, 4, 4], "\(actual.shape)")
        var worst: Float = 0
        for i in 0..<min(actual.count, expected.count) { worst = max(worst, abs(actual.data[i] - expected.data[i])) }
        #expect(worst < 1e-4, "\(name): max |Δ| \(worst)")
        if name != "zsclip" {
            // The prompts change where the class token looks: a check that the columns differ.
            let zeroShot = try maps.tensor("attention")
            #expect(zip(zeroShot.scalars, actual.scalars).contains { abs($0 - $1) > 1e-3 })
        }
    }

    @Test func pictureOfZeroShotAndATrainedRun() throws {
        let base = temporaryDirectory("attention-picture")
        let run = base + "/run"
        let trained = try cavptDist(tinyRun.trainArguments(method: "vlp_cavpt", output: run, epochs: 2))
        try #require(trained.status == 0, "\(trained.stderr)")
        let images = ["red_disc/red_disc_0000.jpg", "blue_sky/blue_sky_0001.jpg"].map {
            tinyRun.dataRoot + "/synthetic/images/" + $0
        }
        let r = try cavptDist(
            [
                "attention", "--run", run, "--model", tinyRun.model, "--dataset", tinyRun.datasetYAML,
                "--data-root", tinyRun.dataRoot, "--images",
            ] + images + [
                "--out", base + "/figure", "--cell", "64",
                "--save-maps", base + "/maps.safetensors",
            ])
        try #require(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("2 image(s) × 2 column(s): zero-shot CLIP, vlp_cavpt"), "\(r.stdout)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: base + "/figure/attention.png")))
        #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        // 3 columns of 64 px with 6 px gaps; a header row and 2 rows.
        let width = Int(bytes[16]) << 24 | Int(bytes[17]) << 16 | Int(bytes[18]) << 8 | Int(bytes[19])
        #expect(width == 3 * 70 + 6)
        let maps = try SafeTensorsFile(path: base + "/maps.safetensors")
        #expect(try maps.tensor("attention").shape == [2, 4, 4] && maps.contains("attention.1"))
        let jpeg = try cavptDist(
            [
                "attention", "--model", tinyRun.model, "--dataset", tinyRun.datasetYAML, "--data-root",
                tinyRun.dataRoot,
                "--images",
            ] + images + ["--out", base + "/zs.jpg"])
        #expect(jpeg.status == 0, "\(jpeg.stderr)")
        #expect(
            Array([UInt8](try Data(contentsOf: URL(fileURLWithPath: base + "/zs.jpg"))).prefix(3)) == [
                0xFF, 0xD8, 0xFF,
            ])
    }
}
