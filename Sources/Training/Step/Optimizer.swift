// SGD with momentum and weight decay in PyTorch's semantics, and the per-epoch learning-rate
// schedule of DESIGN §4 (constant warmup, then cosine), one per parameter group.
import Foundation
import Tensor

/// A learning-rate schedule stepped once per epoch:
/// e < W: warmupLR;  e ≥ W: lr · ½(1 + cos(π (e − W) / E)), E = total epochs.
public struct LRSchedule: Sendable, Equatable {
    public var lr: Double, warmupEpochs: Int, warmupLR: Double, epochs: Int

    public init(lr: Double, warmupEpochs: Int, warmupLR: Double, epochs: Int) {
        self.lr = lr; self.warmupEpochs = warmupEpochs; self.warmupLR = warmupLR; self.epochs = epochs
    }

    public func rate(epoch e: Int) -> Double {
        if e < warmupEpochs { return warmupLR }
        return lr * 0.5 * (1 + cos(Double.pi * Double(e - warmupEpochs) / Double(max(epochs, 1))))
    }
}

public enum ParameterGroup: String, Sendable, CaseIterable {
    /// Visual prompts and CAVPT modules.
    case visual
    /// CoOp's text context, and every text-side tensor (`text.*`; a CoCoOp meta-net, `meta_net.*`).
    case text

    /// The group of a trained tensor, by its canonical name.
    public static func of(_ name: String) -> ParameterGroup {
        name.hasPrefix("text.") || name.hasPrefix("meta_net.") ? .text : .visual
    }
}

/// buf = μ·buf + (g + wd·p);  p −= lr·buf   (dampening 0, no Nesterov; buf starts at g as PyTorch's does).
public final class SGD: @unchecked Sendable {
    public let momentum: Float, weightDecay: Float
    public private(set) var parameters: [(String, Var)]
    /// Momentum buffers by canonical name (checkpointed).
    public private(set) var buffers: [String: Tensor] = [:]

    public init(parameters: [(String, Var)], momentum: Float, weightDecay: Float) {
        self.parameters = parameters
        self.momentum = momentum
        self.weightDecay = weightDecay
    }

    /// One update with the gradients currently held by the parameters.
    public func step(learningRate: (ParameterGroup) -> Float) {
        for (name, p) in parameters {
            guard let g = p.grad else { continue }
            let lr = learningRate(.of(name))
            let n = p.value.count
            let (pp, pg) = (p.value.data, g.data)
            if let buf = buffers[name] {
                let pb = buf.data
                for i in 0..<n { pb[i] = momentum * pb[i] + (pg[i] + weightDecay * pp[i]) }
            } else {
                let buf = Tensor(uninitialized: p.value.shape)
                let pb = buf.data
                for i in 0..<n { pb[i] = pg[i] + weightDecay * pp[i] }
                buffers[name] = buf
            }
            let pb = buffers[name]!.data
            for i in 0..<n { pp[i] -= lr * pb[i] }
        }
    }

    /// Restores momentum buffers (from a checkpoint); names must be parameters with equal shapes.
    public func loadBuffers(_ tensors: [String: Tensor]) throws {
        let shapes = Dictionary(uniqueKeysWithValues: parameters.map { ($0.0, $0.1.shape) })
        for (name, t) in tensors {
            guard let shape = shapes[name], shape == t.shape else {
                throw TrainingError.checkpoint("momentum buffer \"\(name)\" does not match a trained tensor")
            }
            buffers[name] = t.copy()
        }
    }
}
