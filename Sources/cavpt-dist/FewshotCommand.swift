// `cavpt-dist fewshot`: sample a dataset's few-shot train/val lists (DESIGN §2) and write them as
// JSON that `train --fewshot FILE` reuses as is.
import ArgumentParser
import Data
import Foundation
import Training

struct Fewshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fewshot",
        abstract: "Sample the few-shot train/val lists of a dataset and write them as JSON.",
        discussion: """
            Per class, K images are drawn without replacement from the split's train list (all of \
            them when a class has fewer) and min(K, 4) from val, with a generator seeded by --seed. \
            K is train.shots: 16 unless the config file or --set train.shots=K says otherwise.
            """)

    @Option(help: "A dataset from configs/datasets (e.g. eurosat, dtd, imagefolder).")
    var dataset: String?

    @Option(
        help: ArgumentHelp(
            "A YAML file with a `dataset:` section (a dataset definition or `dataset: {name: NAME}`), optionally "
                + "`train.shots`."))
    var config: String?

    @Option(help: "The folder holding the dataset folders, laid out as for CoOp.")
    var dataRoot: String

    @Option(help: "Seed of the sampling generator.")
    var seed: Int

    @Option(name: .customLong("set"), help: "Override a setting; only train.shots=K applies here.")
    var overrides: [String] = []

    @Option(help: "The JSON file to write.")
    var out: String

    static let defaultShots = 16

    func validate() throws {
        if (dataset == nil) == (config == nil) {
            throw ValidationError("give exactly one of --dataset NAME or --config FILE")
        }
    }

    func run() throws {
        do {
            var shots = Self.defaultShots
            let spec: DatasetSpec
            if let config {
                let file = try DatasetConfigFile(contentsOf: config)
                spec = file.spec
                shots = file.shots ?? shots
            } else {
                spec = try datasetSpec(named: dataset ?? "")
            }
            for assignment in overrides { shots = try Self.shots(from: assignment) }
            guard shots >= 1 else { throw FewshotError("train.shots is \(shots); it must be at least 1") }

            let splits = try loadDataset(spec: spec, dataRoot: dataRoot)
            let lists = sampleFewShot(splits: splits, shots: shots, seed: seed)
            let folder = (out as NSString).deletingLastPathComponent
            if !folder.isEmpty {
                try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            }
            try lists.write(to: out)
            print(
                "\(out): \(lists.train.count) train and \(lists.val.count) val images of \(splits.classNames.count) "
                    + "\(spec.name) classes (\(shots) shots, seed \(seed))")
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// `train.shots=K` → K; any other key is refused by name.
    static func shots(from assignment: String) throws -> Int {
        guard let equals = assignment.firstIndex(of: "=") else {
            throw FewshotError("--set \(assignment): expected key=value (e.g. train.shots=8)")
        }
        let key = assignment[..<equals].trimmingCharacters(in: .whitespaces)
        let value = assignment[assignment.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        guard key == ConfigSchema.name(of: \.train.shots) else {
            throw FewshotError("--set \(assignment): fewshot only uses train.shots, not \(key)")
        }
        guard let shots = Int(value), shots >= 1 else {
            throw FewshotError("--set \(assignment): train.shots must be an integer >= 1")
        }
        return shots
    }
}

struct FewshotError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
