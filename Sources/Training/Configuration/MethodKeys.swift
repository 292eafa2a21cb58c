// The configuration keys of the prompt-tuning method: `method.*` (what a preset sets) and each
// method's own namespace (`cavpt.*`, DESIGN §3.1–3.3), bound to `RunSettings.method`.
// A method with settings of its own adds its namespace here: a `[ConfigKey]` bound to its settings
// struct in `MethodSettings`, appended to `methodNamespaceKeys`.
import PromptTuning

extension ConfigSchema {
    static let methodKeys: [ConfigKey] = [
        .choice(
            "method.name", \.methodName, MethodPresets.names + [MethodPresets.custom],
            "preset name (informative; `--method` picks the preset)"),
        .bool("method.textPrompt", \.method.textPrompt, "learn a CoOp text context"),
        .int("method.textLength", \.method.textLength, min: 1, "M, learned context tokens"),
        .choice(
            "method.visualPrompt", \.method.visualPrompt,
            "`none`, `shallow` (prompts into layer 1, carried through) or `deep` (fresh prompts per layer)"),
        .int("method.visualLength", \.method.visualLength, min: 1, "P, visual prompt tokens per layer"),
    ]

    /// Each method's namespace, after the run's sources in `config --list`.
    static let methodNamespaceKeys: [ConfigKey] = cavptKeys

    static let cavptKeys: [ConfigKey] = [
        .intList(
            "cavpt.layers", \.method.cavpt.layers,
            "1-based image layers with a CAVPT module; negative counts from the end (`[-1]` = last)"),
        .int(
            "cavpt.topK", \.method.cavpt.topK, min: 0,
            "K_N, classes selected per image by zero-shot CLIP (0 = all; capped at K)"),
        .choice(
            "cavpt.queries", \.method.cavpt.queries,
            "`template` (frozen template text features) or `learned` (learned-context features)"),
        .choice("cavpt.queryDepth", \.method.cavpt.queryDepth, [1, 2], "query MLP layers (1 or 2)"),
        .choice(
            "cavpt.residual", \.method.cavpt.residual,
            "`classToken` or `query`: what is added to the attention output before LN_b"),
        .bool("cavpt.outputProjection", \.method.cavpt.outputProjection, "a Linear d→d after LN_b"),
        .choice(
            "cavpt.nonTarget", \.method.cavpt.nonTarget,
            "`uniform` or `ignore`: the CAVPT loss for slots whose class is not the label"),
        .float("cavpt.alpha", \.method.cavpt.alpha, min: 0, "weight of the CAVPT loss"),
        .int(
            "cavpt.guidanceEpochs", \.method.cavpt.guidanceEpochs, min: 0,
            "epochs of the released code's general-knowledge guidance loss"),
    ]
}
