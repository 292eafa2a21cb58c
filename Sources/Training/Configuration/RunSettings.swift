// A run's settings as typed values. The flat key/value `Config` (the file format) is decoded into
// them once, through the bindings of `ConfigSchema.keys`; code reads `settings.train.batchSize`,
// never a key by its string. Every default is the initial value of its field here (the schema's
// defaults, `config --list` and the README's table are read off `RunSettings()`).
import Data
import PromptTuning
import Tensor

public struct RunSettings: Sendable, Equatable {
    /// `method.name`: the preset a run was built from (`custom` when none).
    public var methodName = "custom"
    /// What the prompt-tuning method trains and how (`method.*`, `cavpt.*`; the CoOp family's
    /// namespaces go beside `cavpt` in `MethodSettings`).
    public var method = MethodSettings()
    public var dataset = DatasetSettings()
    public var model = ModelSettings()
    public var data = DataSettings()
    public var output = OutputSettings()
    public var train = TrainSettings()
    public var optim = OptimizerSettings()
    public var checkpoint = CheckpointSettings()
    public var eval = EvaluationSettings()
    public var runtime = RuntimeSettings()

    public init() {}

    /// The decoding: every schema key's value into its field.
    public init(_ config: Config) {
        self.init()
        for key in ConfigSchema.keys {
            if let value = config.values[key.name] { key.write(&self, value) }
        }
    }
}

/// `dataset.*`: which dataset, and partial overrides of its definition ("" keeps the definition's).
public struct DatasetSettings: Sendable, Equatable {
    public var name = ""
    /// The definition file (`configs/datasets/NAME.yaml`, or the run's recorded config).
    public var config = ""
    public var template = ""
    public var folder = ""
    public var images = ""
    public var splitFile = ""
    public var classFile = ""
}

/// `model.*`: the frozen CLIP.
public struct ModelSettings: Sendable, Equatable {
    public var path = ""
    /// "" finds the vocabulary next to the weights, or the bundled one.
    public var vocab = ""
}

/// `data.*`: where the images are and which of them a run sees.
public struct DataSettings: Sendable, Equatable {
    public var root = ""
    /// A few-shot list file to train on instead of sampling ("" samples with the seed).
    public var fewshot = ""
    public var subsample: ClassSubset = .all
}

/// `output.*`.
public struct OutputSettings: Sendable, Equatable {
    /// The run directory ("" = runs/<dataset>/<method>/seed<seed>).
    public var dir = ""
}

/// `train.shardText`: split the learned-context text encoder over the ranks by class.
public enum TextSharding: String, Sendable, CaseIterable {
    case auto
    case always = "true"
    case never = "false"
}

/// `train.*`: the training protocol (DESIGN §2, §4).
public struct TrainSettings: Sendable, Equatable {
    public var epochs = 200
    public var shots = 16
    /// B, the global batch (split over the ranks).
    public var batchSize = 32
    public var seed = 1
    public var workers = 2
    public var prefetch = 2
    public var logEvery = 10
    public var shardText = TextSharding.auto
}

/// One parameter group's learning rate and warm-up (DESIGN §4).
public struct GroupSchedule: Sendable, Equatable {
    public var lr: Double
    public var warmupEpochs: Int
    public var warmupLR: Double
}

/// `optim.*`: SGD and the two parameter groups' schedules.
public struct OptimizerSettings: Sendable, Equatable {
    public var momentum = 0.9
    public var weightDecay = 5e-4
    public var visual = GroupSchedule(lr: 0.01, warmupEpochs: 10, warmupLR: 1e-5)
    public var text = GroupSchedule(lr: 0.002, warmupEpochs: 1, warmupLR: 1e-5)

    public subscript(group: ParameterGroup) -> GroupSchedule {
        switch group {
        case .visual: return visual
        case .text: return text
        }
    }
}

/// `checkpoint.*`.
public struct CheckpointSettings: Sendable, Equatable {
    /// Epochs between checkpoints (0 = none; the last epoch is always saved).
    public var every = 10
    public var keep = 3
}

/// `eval.split`: the list the final evaluation uses.
public enum EvaluationSplit: String, Sendable, CaseIterable { case test, val }

/// `eval.*`.
public struct EvaluationSettings: Sendable, Equatable {
    public var batchSize = 100
    public var split = EvaluationSplit.test
    /// Evaluate the few-shot val list every N epochs and the last (0 = never).
    public var valEvery = 0
}

/// `runtime.*`: threads and arithmetic.
public struct RuntimeSettings: Sendable, Equatable {
    /// BLAS threads per rank (0 = cores on the node ÷ ranks on the node).
    public var blasThreads = 0
    public var precision = Precision.fp32
    /// Activations the backward recomputes instead of keeping (bit-identical numbers, DESIGN §3a).
    public var recompute = Recompute.none
}

extension LRSchedule {
    /// A parameter group's schedule over a run's epochs.
    public init(_ settings: RunSettings, group: ParameterGroup) {
        let g = settings.optim[group]
        self.init(lr: g.lr, warmupEpochs: g.warmupEpochs, warmupLR: g.warmupLR, epochs: settings.train.epochs)
    }
}
