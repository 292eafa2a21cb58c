// From the flat run configuration to the typed settings of the prompt-tuning method and optimiser.
import PromptTuning

extension MethodSettings {
    public init(config c: Config) {
        self.init()
        textPrompt = c.bool("method.textPrompt")
        textLength = c.int("method.textLength")
        visualPrompt = VisualPromptMode(rawValue: c.string("method.visualPrompt")) ?? .none
        visualLength = c.int("method.visualLength")
        cavpt.layers = c.intList("cavpt.layers")
        cavpt.topK = c.int("cavpt.topK")
        cavpt.queries = CAVPTQueries(rawValue: c.string("cavpt.queries")) ?? .template
        cavpt.queryDepth = c.int("cavpt.queryDepth")
        cavpt.residual = CAVPTResidual(rawValue: c.string("cavpt.residual")) ?? .classToken
        cavpt.outputProjection = c.bool("cavpt.outputProjection")
        cavpt.nonTarget = CAVPTNonTarget(rawValue: c.string("cavpt.nonTarget")) ?? .uniform
        cavpt.alpha = Float(c.double("cavpt.alpha"))
        cavpt.guidanceEpochs = c.int("cavpt.guidanceEpochs")
    }
}

extension LRSchedule {
    public init(config c: Config, group: ParameterGroup) {
        let p = "optim.\(group.rawValue)."
        self.init(
            lr: c.double(p + "lr"), warmupEpochs: c.int(p + "warmupEpochs"),
            warmupLR: c.double(p + "warmupLR"), epochs: c.int("train.epochs"))
    }
}
