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

    /// fp32: the products of DESIGN §1 in fp32; bf16: weight matrices held once in bf16 (DESIGN §6a).
    public let precision: Precision

    public init(tensors: [String: Tensor], precision: Precision = .fp32) throws {
        self.precision = precision
        // bf16: element-wise loops join oneDNN's OpenMP team (see Parallel.onOpenMPTeam).
        if precision == .bf16 { Parallel.onOpenMPTeam = true }
        image = try ImageEncoder(tensors, precision: precision)
        text = try TextEncoder(tensors, precision: precision)
        guard let ls = tensors["logit_scale"], ls.count == 1 else { throw CLIPModelError.missingWeight("logit_scale") }
        logitScale = expf(ls.scalar)
    }

    /// exp(logit_scale) · normalize(image) · normalize(text)ᵀ   [n, D], [K, D] -> [n, K]
    /// The CAVPT paper's eq. 1 (CLIP's prediction: softmax over the classes of these cosine logits).
    public func logits(imageFeatures: Var, textFeatures: Var) -> Var {
        logitScale * matmul(l2Normalize(imageFeatures), l2Normalize(textFeatures), transB: true)
    }
}
