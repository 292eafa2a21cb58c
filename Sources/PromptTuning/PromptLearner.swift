// A prompt-tuning method on a frozen CLIP (DESIGN §3): the trained tensors (CoOp context, visual
// prompts, CAVPT modules), the prompted forward pass, and the paper's losses.
//
// b images in this rank's shard, B images in the global batch, K classes, K_N selected classes,
// L image layers, T image tokens, P visual prompt length, d image width, w text width, D embedding width.
import CLIP
import Tensor

public final class PromptLearner: @unchecked Sendable {
    public let settings: MethodSettings
    public let model: CLIPModel
    public let prompts: ClassPrompts
    /// Frozen template text features [K, D], computed once per run.
    public let templateFeatures: Tensor
    public let textContext: Var? // text.ctx [M, w]
    let contextPrompts: TextContextPrompts?
    public let visualPrompts: Var? // visual.prompts [rows, P, d]
    public let cavpt: [CAVPTModule] // by ascending layer
    /// For each 0-based image layer, the row of visual.prompts it takes (nil: none).
    let promptRow: [Int?]
    /// Canonical name -> trained tensor, in a fixed order (checkpoints, allreduce packing).
    public let parameters: [(String, Var)]

    public var classCount: Int { prompts.classNames.count }
    /// K_N actually used (capped at K; 0 = all).
    public var selectedPerImage: Int {
        settings.cavpt.topK <= 0 ? classCount : min(settings.cavpt.topK, classCount)
    }

    public init(model: CLIPModel, prompts: ClassPrompts, settings: MethodSettings, seed: UInt64) throws {
        self.settings = settings
        self.model = model
        self.prompts = prompts
        templateFeatures = try prompts.templateFeatures(model.text)
        let L = model.image.layers, d = model.image.width
        var params: [(String, Var)] = []
        var seeds = SplitMix64(seed: seed)

        if settings.textPrompt {
            let ctx = Var(
                trainable: .randn([settings.textLength, model.text.width], std: 0.02, seed: seeds.next()),
                name: "text.ctx")
            textContext = ctx
            contextPrompts = try TextContextPrompts(prompts, text: model.text)
            params.append(("text.ctx", ctx))
        } else {
            textContext = nil
            contextPrompts = nil
        }

        let cavptLayers = try Self.resolveLayers(settings.cavpt.layers, depth: L)
        var rows: [Int?] = Array(repeating: nil, count: L)
        var rowCount = 0
        switch settings.visualPrompt {
        case .none: break
        case .shallow: rows[0] = cavptLayers.contains(1) ? nil : 0; rowCount = rows[0] == nil ? 0 : 1
        case .deep:
            for l in 0..<L where !cavptLayers.contains(l + 1) { rows[l] = rowCount; rowCount += 1 }
        }
        promptRow = rows
        if rowCount > 0 {
            let vp = Var(
                trainable: .randn([rowCount, settings.visualLength, d], std: 0.02, seed: seeds.next()),
                name: "visual.prompts")
            visualPrompts = vp
            params.append(("visual.prompts", vp))
        } else {
            visualPrompts = nil
        }
        cavpt = cavptLayers.map {
            CAVPTModule(
                layer: $0, settings: settings.cavpt, width: d, textDim: model.text.embedDim,
                classes: prompts.classNames.count, seed: seeds.next())
        }
        for module in cavpt { params += module.parameters }
        parameters = params
    }

    /// 1-based layers, negatives counted from the end; sorted, unique, each in 1...depth.
    static func resolveLayers(_ layers: [Int], depth: Int) throws -> [Int] {
        let resolved = layers.map { $0 < 0 ? depth + 1 + $0 : $0 }
        for (given, l) in zip(layers, resolved) where l < 1 || l > depth {
            throw PromptError.configuration(
                "cavpt.layers: layer \(given) does not exist in a \(depth)-layer image encoder")
        }
        return Array(Set(resolved)).sorted()
    }

    /// Whether a trained tensor serves training only: CAVPT's class branch (`cavpt.{l}.classifier`)
    /// shapes the CAVPT loss over the training classes and plays no part in a prediction.
    public static func isTrainingOnly(_ name: String) -> Bool {
        name.hasPrefix("cavpt.") && name.hasSuffix(".classifier.weight")
    }

    /// Sets trained tensors by canonical name (e.g. from `--params` or a checkpoint); every given
    /// name must exist with the same shape. `forEvaluation` skips the training-only tensors, so a
    /// run evaluates on classes other than those it trained on (base-to-new, cross-dataset).
    public func load(_ tensors: [String: Tensor], requireAll: Bool = false, forEvaluation: Bool = false) throws {
        let known = Dictionary(uniqueKeysWithValues: parameters)
        for (name, t) in tensors where !(forEvaluation && Self.isTrainingOnly(name)) {
            guard let v = known[name] else {
                throw PromptError.parameter(
                    "unexpected trained tensor \"\(name)\" (this method trains: "
                        + "\(parameters.map(\.0).joined(separator: ", ")))"
                )
            }
            guard v.shape == t.shape else {
                throw PromptError.parameter("trained tensor \"\(name)\" has shape \(t.shape), expected \(v.shape)")
            }
            v.value.assign(t)
        }
        if requireAll,
            let missing = parameters.first(where: {
                tensors[$0.0] == nil && !(forEvaluation && Self.isTrainingOnly($0.0))
            })
        {
            throw PromptError.parameter("missing trained tensor \"\(missing.0)\"")
        }
    }

    // MARK: Forward

    /// What the frozen encoder says about a batch before the prompted pass.
    public struct Selection: Sendable {
        /// Plain image features [b, D] (unnormalised), when a loss or CAVPT needs them.
        public var plainFeatures: Tensor?
        /// Per image, the K_N classes zero-shot CLIP ranks highest, best first; every class in class
        /// order when K_N = K (no result depends on the order of the slots, only on the set).
        public var selected: [[Int]]

        public init(plainFeatures: Tensor?, selected: [[Int]]) {
            self.plainFeatures = plainFeatures
            self.selected = selected
        }
    }

    /// Needs the frozen zero-shot pass (CAVPT selection or the guidance loss)? Not when CAVPT selects
    /// every class (K_N = K): the ranking would only order the slots, and the class-aware prompts, the
    /// attention over them and L_ca are the same for any order (an exact shortcut, DESIGN §3.1: it saves a
    /// whole frozen image forward per step, e.g. EuroSAT with K_N = 10 and OxfordPets).
    func needsPlainPass(epoch: Int) -> Bool {
        (!cavpt.isEmpty && selectedPerImage < classCount) || (epoch < settings.cavpt.guidanceEpochs)
    }

    public func select(pixels: Tensor, epoch: Int) -> Selection {
        let b = pixels.shape.first ?? 0
        let everyClass = cavpt.isEmpty ? [] : Array(repeating: Array(0..<classCount), count: b)
        guard needsPlainPass(epoch: epoch) else { return Selection(plainFeatures: nil, selected: everyClass) }
        let plain = model.image(Var(pixels)).value
        guard !cavpt.isEmpty else { return Selection(plainFeatures: plain, selected: []) }
        if selectedPerImage >= classCount { return Selection(plainFeatures: plain, selected: everyClass) }
        let zeroShot = model.logits(imageFeatures: Var(plain), textFeatures: Var(templateFeatures)).value
        return Selection(plainFeatures: plain, selected: topClasses(zeroShot, k: selectedPerImage))
    }

    /// (layer, image, slot) entries that count in L_ca for this shard (DESIGN §3.1 step 7).
    public func contributingPairs(_ selection: Selection, labels: [Int]) -> Int {
        guard !cavpt.isEmpty else { return 0 }
        switch settings.cavpt.nonTarget {
        case .uniform: return cavpt.count * labels.count * selectedPerImage
        case .ignore:
            let hits = zip(selection.selected, labels).reduce(0) { $0 + ($1.0.contains($1.1) ? 1 : 0) }
            return cavpt.count * hits
        }
    }

    /// True when L_ca's normaliser depends on the data (`ignore`): the count must be summed over ranks
    /// before backward. For `uniform` it is `contributingPairs(globalBatch:)`.
    public var pairCountNeedsReduction: Bool { !cavpt.isEmpty && settings.cavpt.nonTarget == .ignore }

    /// L_ca's normaliser under `uniform`: every (layer, image, slot) of the global batch.
    public func contributingPairs(globalBatch: Int) -> Int { cavpt.count * globalBatch * selectedPerImage }

    /// Text features for evaluation: as `textFeatures()`, without recording a graph.
    public func evaluationTextFeatures() -> Tensor {
        if let contextPrompts, let textContext {
            return contextPrompts.features(model.text, context: Var(textContext.value)).value
        }
        return templateFeatures
    }

    /// Learned-prompt text features of a range of classes (with gradient into `text.ctx`); nil
    /// when the method learns no text context.
    public func textFeatures(classes: Range<Int>) -> Var? {
        guard let contextPrompts, let textContext else { return nil }
        return contextPrompts.features(model.text, context: textContext, classes: classes)
    }

    /// Text features the main logits use: learned CoOp prompts (with gradient) or the frozen template.
    public func textFeatures() -> Var {
        if let contextPrompts, let textContext { return contextPrompts.features(model.text, context: textContext) }
        return Var(templateFeatures)
    }

    /// The prompted image encoder. Returns image features [b, D] and each CAVPT layer's class logits.
    /// `lastLayer` sees the last image block and the tokens entering it (class token, patches and
    /// whatever prompts that layer has), e.g. for its attention map.
    public func imageFeatures(
        pixels: Tensor, selection: Selection, textFeatures: Var,
        lastLayer: ((ResidualBlock, Var) -> Void)? = nil
    ) -> (Var, [Var]) {
        let image = model.image
        let b = pixels.shape[0], T = image.tokens, L = image.layers
        var x = image.embed(Var(pixels))
        var classLogits: [Var] = []
        // Queries: the selected classes' text features, slot order, [b·K_N, D].
        let kN = selectedPerImage
        var queryText: Var?
        if !cavpt.isEmpty {
            let source = settings.cavpt.queries == .learned ? textFeatures : Var(templateFeatures)
            queryText = gatherRows(source, selection.selected.flatMap { $0 })
        }
        var cavptIndex = 0
        for l in 0..<L {
            let last = l == L - 1
            // Rows whose outputs continue: image tokens (and shallow prompts once inserted).
            let carried = x.shape[1]
            if cavptIndex < cavpt.count, cavpt[cavptIndex].layer == l + 1 {
                let module = cavpt[cavptIndex]
                cavptIndex += 1
                let (prompts, logits) = module(
                    tokens: sliceTokens(x, 0..<T), queryText: queryText!, selectedPerImage: kN)
                classLogits.append(logits)
                let input = concatTokens([x, prompts], samples: b)
                if last { lastLayer?(image.blocks[l], input) }
                x = image.blocks[l](input, outputs: .prefix(last ? 1 : carried))
            } else if let row = promptRow[l], let visualPrompts {
                let rowPrompts = reshape(
                    sliceLeading(visualPrompts, row..<(row + 1)),
                    [settings.visualLength, image.width])
                let input = settings.visualPrompt == .none ? x : concatTokens([x, rowPrompts], samples: b)
                if last { lastLayer?(image.blocks[l], input) }
                switch settings.visualPrompt {
                case .deep: x = image.blocks[l](input, outputs: .prefix(last ? 1 : carried))
                case .shallow: x = image.blocks[l](input, outputs: last ? .prefix(1) : .all) // carried on
                case .none: x = image.blocks[l](x, outputs: last ? .prefix(1) : .all)
                }
            } else {
                if last { lastLayer?(image.blocks[l], x) }
                x = image.blocks[l](x, outputs: last ? .prefix(1) : .all)
            }
        }
        return (image.head(x), classLogits)
    }

    /// The last image layer's attention of the class token over the patch tokens, averaged over
    /// heads, with whatever prompts that layer has (the softmax runs over every key, prompts
    /// included; the map is its patch part): [b, grid, grid] (CAVPT paper, Figs. 1 and 4).
    public func classTokenAttention(pixels: Tensor) -> Tensor {
        let selection = select(pixels: pixels, epoch: Int.max)
        let textFeatures = evaluationTextFeatures()
        var probabilities: Tensor?
        _ = imageFeatures(pixels: pixels, selection: selection, textFeatures: Var(textFeatures)) { block, input in
            probabilities = block.attentionProbabilities(input, queryRows: 1)
        }
        let p = probabilities! // [b, heads, 1, S]
        let (b, heads, S) = (p.shape[0], p.shape[1], p.shape[3])
        let grid = model.image.resolution / model.image.patch
        let maps = Tensor(zeros: [b, grid, grid])
        for i in 0..<b {
            for h in 0..<heads {
                let row = p.data + (i * heads + h) * S
                for j in 0..<(grid * grid) { maps.data[i * grid * grid + j] += row[1 + j] / Float(heads) }
            }
        }
        return maps
    }

    /// Per-shard contributions to the global loss.
    public struct StepOutput {
        /// This shard's share of the global loss (already divided by the global normalisers).
        public var loss: Var
        /// Main logits [b, K] (for accuracy).
        public var logits: Tensor
        public var correct: Int
        /// The CAVPT term's share of `loss` (α · L_ca, same normalisation); 0 without CAVPT. The rest
        /// of `loss` is the cross-entropy part (with the guidance terms in that phase).
        public var cavptLoss: Float = 0
    }

    /// The loss of DESIGN §3.1 step 7 and §3.3 for this shard (CE over the eq. 1 logits plus α · L_ca,
    /// the CAVPT paper's eq. 9–10), normalised by global counts so that summing the
    /// shards' gradients gives the gradient of the global mean loss.
    ///   globalBatch: B.   contributingPairs: the global count of L_ca entries (0: no CAVPT term).
    /// `text` replaces the text features the method would compute (the trainer passes a leaf holding
    /// the all-gathered features when the text side is sharded over ranks).
    public func loss(
        pixels: Tensor, labels: [Int], selection: Selection, epoch: Int,
        globalBatch: Int, contributingPairs: Int, text given: Var? = nil
    ) -> StepOutput {
        let text = given ?? textFeatures()
        let (features, classLogits) = imageFeatures(pixels: pixels, selection: selection, textFeatures: text)
        let logits = model.logits(imageFeatures: features, textFeatures: text)
        let perBatch = 1 / Float(max(globalBatch, 1))
        var total = perBatch * crossEntropy(logits, .hard(labels), reduction: .sum)
        if epoch < settings.cavpt.guidanceEpochs, let plain = selection.plainFeatures {
            // General-knowledge guidance: zero-shot image · learned text + prompted image · template text.
            let zeroShotLearned = model.logits(imageFeatures: Var(plain), textFeatures: text)
            let promptedTemplate = model.logits(imageFeatures: features, textFeatures: Var(templateFeatures))
            total =
                0.1 * total
                + perBatch * crossEntropy(zeroShotLearned, .hard(labels), reduction: .sum)
                + perBatch * crossEntropy(promptedTemplate, .hard(labels), reduction: .sum)
        }
        var cavptShare: Float = 0
        if !classLogits.isEmpty && contributingPairs > 0 {
            let ca =
                (settings.cavpt.alpha / Float(contributingPairs))
                * classAwareLoss(classLogits, labels: labels, selection: selection)
            cavptShare = ca.value.scalar
            total = total + ca
        }
        let predictions = argmaxRows(logits.value)
        let correct = zip(predictions, labels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
        return StepOutput(loss: total, logits: logits.value, correct: correct, cavptLoss: cavptShare)
    }

    /// Σ over this shard's counting (layer, image, slot) entries of the class-branch CE.
    func classAwareLoss(_ classLogits: [Var], labels: [Int], selection: Selection) -> Var {
        let kN = selectedPerImage, K = classCount
        var terms: [Var] = []
        for logits in classLogits { // [b·K_N, K]
            switch settings.cavpt.nonTarget {
            case .ignore:
                var rows: [Int] = [], targets: [Int] = []
                for (i, slots) in selection.selected.enumerated() {
                    for (j, c) in slots.enumerated() where c == labels[i] { rows.append(i * kN + j); targets.append(c) }
                }
                if !rows.isEmpty {
                    terms.append(crossEntropy(gatherRows(logits, rows), .hard(targets), reduction: .sum))
                }
            case .uniform:
                let target = Tensor(shape: [labels.count * kN, K], repeating: 1 / Float(K))
                for (i, slots) in selection.selected.enumerated() {
                    for (j, c) in slots.enumerated() where c == labels[i] {
                        let row = target.data + (i * kN + j) * K
                        row.update(repeating: 0, count: K)
                        row[c] = 1
                    }
                }
                terms.append(crossEntropy(logits, .soft(target), reduction: .sum))
            }
        }
        return terms.dropFirst().reduce(terms.first ?? Var(Tensor(scalar: 0))) { $0 + $1 }
    }

    /// Class predictions for evaluation. `textFeatures` is computed once per evaluation by the caller.
    public func predict(pixels: Tensor, textFeatures: Tensor) -> Tensor {
        let selection = select(pixels: pixels, epoch: Int.max)
        let (features, _) = imageFeatures(pixels: pixels, selection: selection, textFeatures: Var(textFeatures))
        return model.logits(imageFeatures: features, textFeatures: Var(textFeatures)).value
    }
}

/// Index of the largest entry of each row (first on ties).
public func argmaxRows(_ t: Tensor) -> [Int] {
    let (n, K) = (t.rows, t.lastDim)
    return (0..<n).map { i in
        let row = t.data + i * K
        var best = 0
        for j in 1..<max(K, 1) where row[j] > row[best] { best = j }
        return best
    }
}
