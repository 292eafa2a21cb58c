// From a run's settings to its model: the frozen CLIP and tokenizer (with the precision the CPU
// allows), the threads its products run on, the prompt learner of its method, and what results.json
// records about the model.
import CLIP
import Data
import Distributed
import Foundation
import PromptTuning
import Tensor

extension RunSetup {
    /// The frozen CLIP and its tokenizer.
    public static func model(_ c: Config) throws -> (CLIPModel, CLIPTokenizer) {
        let s = c.settings
        let path = s.model.path
        guard !path.isEmpty else {
            throw ConfigError.unset(
                \.model.path, hint: "pass --model PATH (a .safetensors file or a folder with model.safetensors)")
        }
        let precision = try checkedPrecision(s.runtime.precision.rawValue)
        // Bit-identical numbers whichever is chosen (DESIGN §3a), so it may change on resume.
        ResidualBlock.recompute = s.runtime.recompute
        let (_, tensors) = try loadCLIPWeights(path: path)
        let model = try CLIPModel(tensors: tensors, precision: precision)
        let vocab = s.model.vocab
        let tokenizer = try CLIPTokenizer(try findVocabulary(modelPath: path, override: vocab.isEmpty ? nil : vocab))
        guard tokenizer.vocabularySize <= model.text.vocabularySize else {
            throw TrainingError.input(
                "the tokenizer's vocabulary (\(tokenizer.vocabularySize) ids) is larger than the model's token "
                    + "embedding (\(model.text.vocabularySize) rows); pass the vocabulary this model was trained "
                    + "with (--vocab)"
            )
        }
        return (model, tokenizer)
    }

    /// BLAS threads per rank: CAVPT_DIST_BLAS_THREADS, else runtime.blasThreads, else cores ÷ ranks on
    /// the node.
    public static func configureThreads(_ comm: Communicator, settings: RunSettings?) {
        let env = ProcessInfo.processInfo.environment["CAVPT_DIST_BLAS_THREADS"].flatMap(Int.init)
        let configured = settings.map(\.runtime.blasThreads).flatMap { $0 > 0 ? $0 : nil }
        BLASRuntime.setThreads(comm.defaultBLASThreads(override: env ?? configured))
    }

    /// A precision by name, refused (one line naming the missing instruction set) where bf16 has no
    /// hardware.
    public static func checkedPrecision(_ name: String) throws -> Precision {
        guard let precision = Precision(rawValue: name) else {
            throw ConfigError.bad(
                \.runtime.precision, value: name, expected: "one of fp32, bf16", source: "--precision")
        }
        if precision == .bf16, let reason = OneDNN.bf16Unsupported { throw TrainingError.input(reason) }
        return precision
    }

    /// What the start line says about the arithmetic: "fp32" or "bf16 (oneDNN 2.6.3, avx512_core_bf16)".
    public static func precisionSummary(_ precision: Precision) -> String {
        precision == .fp32
            ? "fp32"
            : "bf16 (oneDNN \(OneDNN.version), \(OneDNN.isaName)\(OneDNN.bf16Emulated ? ", emulated" : ""))"
    }

    /// The prompt learner of the run's method for `classNames` (prompts from `template`), initialised
    /// from the run's seed.
    public static func learner(
        _ c: Config, model: CLIPModel, tokenizer: CLIPTokenizer,
        classNames: [String], template: String
    ) throws -> PromptLearner {
        let s = c.settings
        let method = s.method
        if method.cavpt.queries == .learned && !method.textPrompt && method.usesCAVPT {
            throw ConfigError.bad(
                \.method.cavpt.queries, value: "learned", expected: "template when method.textPrompt is false",
                source: c.source(of: \.method.cavpt.queries))
        }
        let prompts = try ClassPrompts(classNames: classNames, template: template, contextLength: method.textLength) {
            tokenizer.tokenize($0, contextLength: model.text.contextLength)
        }
        return try PromptLearner(model: model, prompts: prompts, settings: method, seed: UInt64(s.train.seed))
    }

    /// Names of the architectures whose shapes are known (results.json): width/layers/patch/resolution.
    static let architectureNames: [String: String] = [
        "768/12/32/224": "ViT-B/32", "768/12/16/224": "ViT-B/16", "1024/24/14/224": "ViT-L/14",
        "1024/24/14/336": "ViT-L/14@336px",
    ]

    /// What results.json records about the model: architecture, the weights file and its CRC-32C.
    public static func modelRecord(_ s: RunSettings, model: CLIPModel) -> [String: Any] {
        let (i, t) = (model.image, model.text)
        let key = "\(i.width)/\(i.layers)/\(i.patch)/\(i.resolution)"
        let file = (try? resolveWeightsFile(s.model.path)) ?? s.model.path
        return [
            "architecture": architectureNames[key]
                ?? "ViT (width \(i.width), \(i.layers) layers, patch \(i.patch), \(i.resolution) px)",
            "vision": [
                "width": i.width, "layers": i.layers, "heads": i.heads, "patch": i.patch, "resolution": i.resolution,
            ],
            "text": [
                "width": t.width, "layers": t.layers, "heads": t.heads, "vocabulary": t.vocabularySize,
                "context": t.contextLength,
            ],
            "embedDim": i.embedDim, "weights": absolutePath(file), "weightsCRC32C": CRC32C.file(file) ?? "unreadable",
        ]
    }
}
