// A tiny random CLIP, its byte-level vocabulary and a synthetic CoOp-layout dataset, written once per
// test process and shared by the integration tests (they only read it).
import CLIP
import Data
import Files
import Foundation
import Tensor

struct TinyRun: Sendable {
    let root: String
    var model: String { root + "/model" }
    var dataRoot: String { root + "/data" }
    var datasetYAML: String { root + "/data/synthetic.yaml" }

    /// `train` arguments for a small run into `output`.
    func trainArguments(method: String, output: String, epochs: Int, batch: Int = 8, extra: [String] = []) -> [String] {
        [
            "train", "--dataset", datasetYAML, "--method", method, "--data-root", dataRoot, "--model", model,
            "--output", output, "--seed", "3", "--set", "train.epochs=\(epochs)", "--set", "train.batchSize=\(batch)",
            "--set", "optim.visual.warmupEpochs=1", "--set", "optim.text.warmupEpochs=1", "--set", "checkpoint.every=1",
            "--set", "checkpoint.keep=10", "--set", "train.workers=1",
        ] + extra
    }
}

/// Built on first use: `cavpt-dist demo --prepare-only` writes exactly what a user's first run sees.
let tinyRun: TinyRun = {
    let root = temporaryDirectory("tinyrun")
    // Few images keep the multi-rank runs short.
    let result = try? cavptDist([
        "demo", "--dir", root, "--prepare-only", "--classes", "4", "--shots", "6",
        "--test-per-class", "4",
    ])
    precondition(result?.status == 0, "demo --prepare-only failed: \(result?.stderr ?? "did not start")")
    return TinyRun(root: root)
}()

func checkpointTensors(_ runDirectory: String, epoch: Int) throws -> [String: Tensor] {
    let file = try SafeTensorsFile(
        path: runDirectory + "/checkpoints/" + String(format: "epoch-%04d", epoch) + "/state.safetensors")
    var out: [String: Tensor] = [:]
    for name in file.names { out[name] = try file.tensor(name) }
    return out
}

func results(_ runDirectory: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: runDirectory + "/results.json"))
    return (try JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
}

func metricLines(_ runDirectory: String) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: runDirectory + "/metrics.jsonl", encoding: .utf8)
    return text.split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
    }
}
