// `cavpt-dist gradients` against the float64 PyTorch reference of every method (DESIGN §3), and the
// optimiser and schedule against torch.optim.SGD and DESIGN §4.
import CLIP
import Files
import Foundation
import Tensor
import Testing

@testable import Training

struct GradientCase: Decodable, Sendable, CustomTestStringConvertible {
    var name: String
    var preset: String
    var set: [String]
    var epoch: Int
    var params: String?
    var golden: String
    var trained: [String: [Int]]
    var testDescription: String { name }

    /// The `gradients` command line for this case on the manifest's model, data and pixels.
    func arguments(_ m: GradientManifest, out: String, precision: String? = nil) -> [String] {
        let g = { goldenDirectory + "/" + $0 }
        var args = [
            "gradients", "--model", g(m.model), "--vocab", g(m.vocab), "--method", preset,
            "--classes", g(m.classes), "--template", m.template, "--pixels", g(m.pixels), "--labels", g(m.labels),
            "--epoch", String(epoch), "--out", out,
        ]
        if let precision { args += ["--precision", precision] }
        if let params { args += ["--params", g(params)] }
        for s in set { args += ["--set", s] }
        return args
    }
}

struct GradientManifest: Decodable {
    var model: String, vocab: String, classes: String, template: String, pixels: String, labels: String
    var tolerance: Float
    var cases: [GradientCase]
}

let gradientManifest: GradientManifest = {
    let data = FileManager.default.contents(atPath: goldenDirectory + "/grad_cases.json") ?? Data()
    return (try? JSONDecoder().decode(GradientManifest.self, from: data))
        ?? GradientManifest(
            model: "", vocab: "", classes: "", template: "", pixels: "", labels: "", tolerance: 0, cases: [])
}()

@Suite struct GradientGoldens {
    @Test func manifestLoads() { #expect(gradientManifest.cases.count >= 12) }

    @Test(arguments: gradientManifest.cases)
    func gradientsMatchPyTorch(_ c: GradientCase) throws {
        let m = gradientManifest
        let g = { goldenDirectory + "/" + $0 }
        let out = temporaryDirectory("grad") + "/out.safetensors"
        let result = try cavptDist(c.arguments(m, out: out))
        try #require(result.status == 0, "\(result.stderr)")
        let produced = try SafeTensorsFile(path: out)
        let expected = try SafeTensorsFile(path: g(c.golden))
        #expect(relativeError(try produced.tensor("loss"), try expected.tensor("loss")) < m.tolerance, "loss")
        #expect(Set(produced.names) == Set(["loss"] + c.trained.keys), "trained tensors")
        for (name, shape) in c.trained {
            let grad = try produced.tensor(name)
            #expect(grad.shape == shape, "\(name) shape")
            let err = relativeError(grad, try expected.tensor("grad." + name))
            #expect(err < m.tolerance, "\(c.name): \(name) relative error \(err)")
        }
    }
}

@Suite struct RecomputeAndAttentionSwitch {
    /// runtime.recompute (attention, blocks) gives the gradients of `none` bit for bit, in fp32 and bf16; the
    /// unfused attention (CAVPT_DIST_ATTENTION=unfused) meets the same float64 goldens.
    @Test(arguments: ["fp32", "bf16"])
    func recomputeChangesNoBit(_ precision: String) throws {
        let m = gradientManifest
        let c = m.cases.first { $0.preset == "vlp_cavpt" } ?? m.cases[0]
        let env = precision == "bf16" && !OneDNN.bf16Native ? ["CAVPT_DIST_BF16_EMULATION": "1"] : [:]
        var outputs: [SafeTensorsFile] = []
        for mode in ["none", "attention", "blocks"] {
            let out = temporaryDirectory("recompute") + "/out.safetensors"
            let result = try cavptDist(
                c.arguments(m, out: out, precision: precision) + ["--set", "runtime.recompute=\(mode)"],
                environment: env)
            try #require(result.status == 0, "\(result.stderr)")
            outputs.append(try SafeTensorsFile(path: out))
        }
        for name in ["loss"] + c.trained.keys {
            let reference = try outputs[0].tensor(name)
            for other in outputs.dropFirst() {
                let t = try other.tensor(name)
                #expect((0..<t.count).allSatisfy { t.data[$0] == reference.data[$0] }, "\(precision) \(name)")
            }
        }
    }

    @Test func unfusedAttentionMeetsTheGoldens() throws {
        let m = gradientManifest
        for c in m.cases.filter({ ["vpt_deep", "vlp_cavpt", "coop"].contains($0.preset) }).prefix(3) {
            let out = temporaryDirectory("unfused") + "/out.safetensors"
            let result = try cavptDist(c.arguments(m, out: out), environment: ["CAVPT_DIST_ATTENTION": "unfused"])
            try #require(result.status == 0, "\(result.stderr)")
            let produced = try SafeTensorsFile(path: out)
            let expected = try SafeTensorsFile(path: goldenDirectory + "/" + c.golden)
            for (name, _) in c.trained {
                let err = relativeError(try produced.tensor(name), try expected.tensor("grad." + name))
                #expect(err < m.tolerance, "\(c.name): \(name) relative error \(err) unfused")
            }
        }
    }
}

@Suite struct OptimiserGoldens {
    @Test func sgdMatchesTorch() throws {
        let f = try SafeTensorsFile(path: goldenDirectory + "/sgd.safetensors")
        let p = Var(trainable: try f.tensor("param"), name: "visual.prompts")
        let lrs = try f.tensor("lr")
        let sgd = SGD(
            parameters: [("visual.prompts", p)], momentum: try f.tensor("momentum").scalar,
            weightDecay: try f.tensor("weight_decay").scalar)
        for step in 1...3 {
            p.setGrad(try f.tensor("grad\(step)"))
            sgd.step { _ in lrs.data[step - 1] }
            #expect(relativeError(p.value, try f.tensor("param\(step)")) < 1e-6, "param after step \(step)")
            #expect(relativeError(sgd.buffers["visual.prompts"]!, try f.tensor("momentum_buffer\(step)")) < 1e-6)
        }
    }

    struct Schedules: Decodable {
        struct Entry: Decodable {
            var lr: Double; var warmupEpochs: Int; var warmupLR: Double; var epochs: Int; var lrPerEpoch: [Double]
        }
        var schedules: [Entry]
    }

    @Test func scheduleFollowsSpec() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: goldenDirectory + "/schedule.json"))
        let s = try JSONDecoder().decode(Schedules.self, from: data)
        #expect(s.schedules.count == 2)
        for entry in s.schedules {
            let schedule = LRSchedule(
                lr: entry.lr, warmupEpochs: entry.warmupEpochs, warmupLR: entry.warmupLR, epochs: entry.epochs)
            for (e, expected) in entry.lrPerEpoch.enumerated() {
                #expect(abs(schedule.rate(epoch: e) - expected) <= 1e-12 * max(1, expected), "epoch \(e)")
            }
        }
    }

    @Test func configGroupsGetTheirSchedules() throws {
        // CoOp's text group and the paper's visual group, from the method configs.
        var c = Config()
        try c.merge(file: packageRoot + "/configs/methods/vlp_cavpt.yaml")
        let text = LRSchedule(RunSettings(c), group: .text), visual = LRSchedule(RunSettings(c), group: .visual)
        #expect(text == LRSchedule(lr: 0.002, warmupEpochs: 1, warmupLR: 1e-5, epochs: 200))
        #expect(visual == LRSchedule(lr: 0.01, warmupEpochs: 10, warmupLR: 1e-5, epochs: 200))
    }
}
