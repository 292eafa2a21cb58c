// The Class-Aware Visual Prompt Tuning module (DESIGN §3.1; the CAVPT paper's eq. 9–10): per image,
// K_N class-aware prompts generated from the text features of the classes zero-shot CLIP ranks
// highest, by attending over the layer's (detached) image tokens plus learnable extra tokens.
// Step 1 (the selection) is `PromptLearner.select`; step 7 (the loss) `PromptLearner.loss`.
//
// b images, K_N selected classes, T image tokens entering the layer, E extra tokens, d image
// width, D text embedding width, a attention width (32), K classes.
import Tensor

#if canImport(Glibc)
import Glibc
#endif

public final class CAVPTModule: @unchecked Sendable {
    public let layer: Int // 1-based image layer
    let settings: CAVPTSettings
    // Q = MLP(G): Linear(D→d) [QuickGELU, Linear(d→d)]
    let query0: (weight: Var, bias: Var)
    let query2: (weight: Var, bias: Var)?
    let extraTokens: Var // E_l [E, d]
    let attnQ: Var, attnK: Var // [a, d]
    let attnV: Var // [d, d]
    let lnA: (weight: Var, bias: Var)
    let classifier: Var // [K, d]
    let lnB: (weight: Var, bias: Var)
    let out: (weight: Var, bias: Var)?

    /// Canonical names and trained tensors, in a fixed order.
    public let parameters: [(String, Var)]

    /// PyTorch default initialisation: Linear U(±1/√fan_in), LayerNorm ones/zeros; E_l ~ N(0, 0.02).
    public init(layer: Int, settings: CAVPTSettings, width d: Int, textDim D: Int, classes K: Int, seed: UInt64) {
        self.layer = layer
        self.settings = settings
        var seeds = SplitMix64(seed: seed)
        func uniform(_ shape: [Int], fanIn: Int) -> Tensor {
            let bound = 1 / Float(fanIn).squareRoot()
            return .uniform(shape, -bound, bound, seed: seeds.next())
        }
        let p = "cavpt.\(layer)."
        var params: [(String, Var)] = []
        func trained(_ name: String, _ t: Tensor) -> Var {
            let v = Var(trainable: t, name: p + name)
            params.append((p + name, v))
            return v
        }
        let a = settings.attentionWidth
        query0 = (
            trained("query.0.weight", uniform([d, D], fanIn: D)), trained("query.0.bias", uniform([d], fanIn: D))
        )
        query2 =
            settings.queryDepth >= 2
            ? (trained("query.2.weight", uniform([d, d], fanIn: d)), trained("query.2.bias", uniform([d], fanIn: d)))
            : nil
        extraTokens = trained("kv_extra", .randn([settings.extraTokens, d], std: 0.02, seed: seeds.next()))
        attnQ = trained("attn.q.weight", uniform([a, d], fanIn: d))
        attnK = trained("attn.k.weight", uniform([a, d], fanIn: d))
        attnV = trained("attn.v.weight", uniform([d, d], fanIn: d))
        lnA = (trained("ln_a.weight", Tensor(shape: [d], repeating: 1)), trained("ln_a.bias", Tensor(zeros: [d])))
        classifier = trained("classifier.weight", uniform([K, d], fanIn: d))
        lnB = (trained("ln_b.weight", Tensor(shape: [d], repeating: 1)), trained("ln_b.bias", Tensor(zeros: [d])))
        out =
            settings.outputProjection
            ? (trained("out.weight", uniform([d, d], fanIn: d)), trained("out.bias", uniform([d], fanIn: d))) : nil
        parameters = params
    }

    /// tokens: X_l [b, T, d] (class token + patches, no prompts); queryText: G [b·K_N, D], the text
    /// features of each image's selected classes in slot order.
    /// Returns the prompts [b, K_N, d] for this layer and the class-branch logits [b·K_N, K].
    public func callAsFunction(
        tokens: Var, queryText: Var, selectedPerImage kN: Int
    ) -> (prompts: Var, classLogits: Var) {
        let (b, T, d) = (tokens.shape[0], tokens.shape[1], tokens.shape[2])
        // Step 2: Q = MLP(G)
        var q = linear(queryText, query0.weight, query0.bias)
        if let query2 { q = linear(quickGELU(q), query2.weight, query2.bias) }
        let queries = reshape(q, [b, kN, d])
        // Step 3: V = [stopgrad(X_l); E_l]
        let keysValues = concatTokens([tokens.detached(), extraTokens], samples: b) // [b, T+E, d]
        // Step 4: A = softmax((Q W_q)(V W_k)ᵀ / √a);  O = (A V) W_v
        let scale = 1 / Float(settings.attentionWidth).squareRoot()
        let scores = scale * bmm(linear(queries, attnQ), linear(keysValues, attnK), transB: true)
        let o = linear(bmm(softmax(scores), keysValues), attnV) // [b, K_N, d]
        // Step 5: class branch LN_a(O) W_cls
        let classLogits = linear(reshape(layerNorm(o, lnA.weight, lnA.bias), [b * kN, d]), classifier)
        // Step 6: prompts LN_b(O + R) [→ Linear]
        let residual: Var
        switch settings.residual {
        case .query: residual = queries
        case .classToken:
            let rows = (0..<b).flatMap { i in Array(repeating: i * T, count: kN) }
            residual = reshape(gatherRows(reshape(tokens, [b * T, d]), rows), [b, kN, d])
        }
        var prompts = layerNorm(o + residual, lnB.weight, lnB.bias)
        if let out { prompts = linear(prompts, out.weight, out.bias) }
        return (prompts, classLogits)
    }
}

/// Zero-shot top-K: for each image the K_N classes with the highest logits, best first (ties: lower
/// class index first). logits: [b, K] -> [b][K_N]
public func topClasses(_ logits: Tensor, k kN: Int) -> [[Int]] {
    let (b, K) = (logits.rows, logits.lastDim)
    return (0..<b).map { i in
        let row = logits.data + i * K
        return Array((0..<K).sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(kN))
    }
}
