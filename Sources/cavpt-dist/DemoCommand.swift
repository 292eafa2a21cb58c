// `cavpt-dist demo`: everything needed to see the trainer work, with no download — a tiny random
// CLIP with a byte-level vocabulary, a synthetic few-shot dataset in CoOp layout, then
// `mpirun -np 2 cavpt-dist train` of vlp_cavpt on it, ending with the test accuracy.
import ArgumentParser
import CLIP
import Data
import Distributed
import Files
import Foundation
import Tensor
import Training

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a tiny random CLIP and a synthetic dataset, then train vlp_cavpt on them over MPI.")

    @Option(help: "Folder for the model, the data and the run.") var dir: String = "demo"
    @Option(help: "MPI ranks (mpirun -np); 1 runs in this process.") var ranks: Int = 2
    @Option(help: "Training epochs.") var epochs: Int = 50
    @Option(help: "Method preset to train.") var method: String = "vlp_cavpt"
    @Option(help: "Synthetic classes (at most 8).") var classes: Int = 8
    @Option(help: "Training images per class (the few-shot K).") var shots: Int = 16
    @Option(name: .customLong("test-per-class"), help: "Test images per class.") var testPerClass: Int = 10
    @Flag(help: "Only write the model and data; print the training command.") var prepareOnly = false

    func run() throws {
        try reportingErrors {
            guard ranks >= 1 else { throw ValidationError("--ranks must be at least 1") }
            guard (2...SyntheticDataset.classes.count).contains(classes), shots >= 1, testPerClass >= 1 else {
                throw ValidationError(
                    "--classes must be 2…\(SyntheticDataset.classes.count), --shots and --test-per-class at least 1")
            }
            let root = URL(fileURLWithPath: dir).standardizedFileURL.path
            let modelDir = root + "/model", dataDir = root + "/data"
            try FileManager.default.createDirectory(atPath: modelDir, withIntermediateDirectories: true)
            let vocabularySize = try DemoVocabulary.write(to: modelDir)
            try SafeTensorsFile.write(
                RandomCLIP.make(.tiny(vocabularySize: vocabularySize), seed: 2024)
                    .sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                metadata: ["note": "random weights for the cavpt-dist demo"],
                to: modelDir + "/model.safetensors")
            try? FileManager.default.removeItem(atPath: dataDir)
            let datasetYAML = try SyntheticDataset.write(
                root: dataDir, classCount: classes, perClass: shots,
                testPerClass: testPerClass)
            print("demo: tiny random CLIP in \(modelDir), synthetic \(classes)-class dataset in \(dataDir)")
            // The demo's settings, as `--set` assignments of the command it prints and runs.
            let sets: [(PartialKeyPath<RunSettings>, Any)] = [
                (\.train.epochs, epochs), (\.train.shots, shots), (\.train.batchSize, 16),
                (\.optim.visual.warmupEpochs, 1), (\.optim.text.warmupEpochs, 1), (\.optim.text.lr, 0.01),
                (\.checkpoint.every, 10), (\.eval.batchSize, 20), (\.train.logEvery, 100),
            ]
            let trainArguments =
                [
                    "train", "--dataset", datasetYAML, "--method", method, "--data-root", dataDir,
                    "--model", modelDir, "--output", root + "/run", "--seed", "1",
                ] + sets.flatMap { ["--set", "\(ConfigSchema.name(of: $0.0))=\($0.1)"] }
            let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            var command = [executable] + trainArguments
            if ranks > 1 {
                guard let mpirun = findOnPath("mpirun") else {
                    throw ValidationError("mpirun not found on PATH; install openmpi-bin or use --ranks 1")
                }
                var mpi = [mpirun, "-np", String(ranks), "--bind-to", "none", "-q"]
                if geteuid() == 0 { mpi.append("--allow-run-as-root") }
                if ranks > BLASRuntime.onlineCPUs { mpi.append("--oversubscribe") }
                command = mpi + command
            }
            print("demo: " + command.map { $0.contains(" ") ? "\"\($0)\"" : $0 }.joined(separator: " "))
            if prepareOnly { return }
            // The baseline the training has to beat: zero-shot accuracy of the (random) CLIP.
            var options = RunOptions()
            options.dataset = datasetYAML; options.method = "zsclip"; options.dataRoot = dataDir;
            options.model = modelDir
            let zeroShot = try RunLoader.load(RunLoad(.options(options)))
            let baseline = try Evaluator(
                comm: SingleProcessCommunicator(), learner: zeroShot.learner, imageRoot: zeroShot.data!.imageRoot,
                settings: zeroShot.settings
            )
            .evaluate(samples: zeroShot.data!.test, listName: "test split")
            print(
                String(
                    format: "demo: zero-shot accuracy of the random CLIP %.2f%% (chance %.2f%%); now training %@",
                    baseline.confusion.accuracy * 100, 100 / Double(classes), method))
            flushStandardOutput()
            // Replace this process with the training job: its output and exit status are the demo's.
            var cArgs: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) }
            cArgs.append(nil)
            execv(command[0], &cArgs)
            throw ValidationError("cannot start \(command[0]): \(String(cString: strerror(errno)))")
        }
    }
}

func findOnPath(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// A byte-level CLIP vocabulary with no merges, in Hugging Face format: ids 0–255 the byte symbols,
/// 256–511 the same with `</w>`, then <|startoftext|> and <|endoftext|> (so EOT is the largest id).
enum DemoVocabulary {
    static func write(to folder: String) throws -> Int {
        // GPT-2/CLIP bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n.
        var bytes = Array(33...126) + Array(161...172) + Array(174...255)
        var symbols = bytes.map { Character(Unicode.Scalar(UInt32($0))!) }
        var extra = 0
        for b in 0..<256 where !bytes.contains(b) {
            bytes.append(b)
            symbols.append(Character(Unicode.Scalar(UInt32(256 + extra))!))
            extra += 1
        }
        var vocab: [String: Int] = [:]
        for (i, s) in symbols.enumerated() { vocab[String(s)] = i; vocab[String(s) + "</w>"] = 256 + i }
        vocab["<|startoftext|>"] = 512
        vocab["<|endoftext|>"] = 513
        let json = try JSONSerialization.data(withJSONObject: vocab, options: [.sortedKeys])
        try json.write(to: URL(fileURLWithPath: folder + "/vocab.json"))
        try "#version: 0.2\n".write(toFile: folder + "/merges.txt", atomically: true, encoding: .utf8)
        return 514
    }
}
