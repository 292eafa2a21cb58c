// The frozen CLIP model: both encoders and the logit scale, built from OpenAI-named tensors.
import Tensor
#if canImport(Glibc)
import Glibc
#endif

public struct CLIPModel: Sendable {
    public let image: ImageEncoder
    public let text: TextEncoder
    /// exp(logit_scale), the temperature on cosine similarities.
    public let logitScale: Float

    public init(tensors: [String: Tensor]) throws {
        image = try ImageEncoder(tensors)
        text = try TextEncoder(tensors)
        guard let ls = tensors["logit_scale"], ls.count == 1 else { throw CLIPModelError.missingWeight("logit_scale") }
        logitScale = expf(ls.scalar)
    }

    /// exp(logit_scale) · normalize(image) · normalize(text)ᵀ   [n, D], [K, D] -> [n, K]
    public func logits(imageFeatures: Var, textFeatures: Var) -> Var {
        logitScale * matmul(l2Normalize(imageFeatures), l2Normalize(textFeatures), transB: true)
    }
}
