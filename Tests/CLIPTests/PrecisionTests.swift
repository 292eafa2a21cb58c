import Foundation
import Tensor
// runtime.precision bf16 at the model level (DESIGN §6a): weight matrices held once, in bf16 only, and
// every product with them a bf16 oneDNN call, counted.
import Testing

@testable import CLIP

/// bf16 runs here natively or, on a CPU without bf16 dot products, through oneDNN's emulated bf16 (the
/// same arithmetic, slowly), which these tests turn on for themselves (CAVPT_DIST_BF16_EMULATION=1).
private let hasBF16: Bool = {
    if !OneDNN.bf16Native { setenv("CAVPT_DIST_BF16_EMULATION", "1", 1) }
    return OneDNN.bf16Unsupported == nil
}()
private let shape = CLIPShape.tiny(vocabularySize: 1014)

private func storageBytes(_ m: FrozenMatrix) -> Int {
    switch m {
    case .fp32(let t): return t.storage.capacity * 4
    case .bf16(let t): return t.storage.capacity * 2
    }
}

/// A bf16 model from freshly made fp32 tensors, and weak references to those tensors' storages.
private func bf16Model() throws -> (CLIPModel, [() -> Storage?], Int) {
    let tensors = RandomCLIP.make(shape, seed: 5)
    let matrixNames = tensors.keys.filter { name in
        name.hasSuffix("in_proj_weight") || name.hasSuffix("out_proj.weight") || name.hasSuffix("c_fc.weight")
            || name.hasSuffix("c_proj.weight")
            || [
                "visual.conv1.weight", "visual.proj", "text_projection",
                "token_embedding.weight",
            ].contains(name)
    }
    let weak = matrixNames.map { name -> () -> Storage? in
        weak var storage = tensors[name]!.storage
        return { storage }
    }
    let elements = matrixNames.reduce(0) { $0 + tensors[$1]!.count }
    return (try CLIPModel(tensors: tensors, precision: .bf16), weak, elements)
}

@Suite(.enabled(if: hasBF16, "this CPU has no bf16 dot products")) struct BF16Model {
    @Test func weightMatricesAreHeldOnceInBF16() throws {
        let (model, weakStorages, elements) = try bf16Model()
        let matrices = model.image.matrices + model.text.matrices
        #expect(matrices.count == 4 + 4 * (shape.visionLayers + shape.textLayers))
        #expect(matrices.allSatisfy { $0.precision == .bf16 })
        // Two bytes per element and nothing else: the query and key/value weights are views of in_proj.
        #expect(matrices.reduce(0) { $0 + storageBytes($1) } == 2 * elements)
        // The fp32 tensors they came from are gone once the loader's dictionary is: no fp32 copy is kept.
        #expect(weakStorages.allSatisfy { $0() == nil })
        // The fp32 model of the same weights holds exactly twice the bytes.
        let fp32 = try CLIPModel(tensors: RandomCLIP.make(shape, seed: 5))
        #expect((fp32.image.matrices + fp32.text.matrices).reduce(0) { $0 + storageBytes($1) } == 4 * elements)
    }

    @Test func frozenWeightProductsAreBF16Calls() throws {
        let (model, _, _) = try bf16Model()
        let L = shape.visionLayers
        let pixels = Var(trainable: .randn([2, 3, shape.resolution, shape.resolution], seed: 6))
        let counter = OpCounter()
        BLAS.$counter.withValue(counter) {
            let features = model.image(pixels)
            sum(features * features).backward()
        }
        // Patch conv + 5 per block (key/value, query, out, c_fc, c_proj) + projection, forward and dx.
        #expect(counter.bf16GEMMs == 2 * (1 + 5 * L + 1))
        // Attention: one fused kernel call forward and one backward per block (or, unfused, 2 batched
        // products forward and 4 backward).
        if FusedAttention.enabled {
            #expect(counter.fusedAttentionCalls == 2 * L && counter.bf16SmallGEMMs == 0)
        } else {
            #expect(counter.bf16SmallGEMMs == 6 * L)
        }
        #expect(counter.gemms == 0, "no fp32 product in the bf16 image encoder")
        #expect(pixels.grad != nil)

        let text = OpCounter()
        _ = try BLAS.$counter.withValue(text) { try model.text(tokens: [[49406 % 1014, 5, 6, 1013, 0]]) }
        #expect(text.bf16GEMMs == 5 * shape.textLayers + 1)
        #expect(
            FusedAttention.enabled
                ? text.fusedAttentionCalls == shape.textLayers : text.bf16SmallGEMMs == 2 * shape.textLayers)
        #expect(text.gemms == 0)
    }

    @Test func fp32ModelMakesNoBF16Calls() throws {
        let model = try CLIPModel(tensors: RandomCLIP.make(shape, seed: 5))
        let counter = OpCounter()
        _ = BLAS.$counter.withValue(counter) {
            model.image(Var(.randn([1, 3, shape.resolution, shape.resolution], seed: 7)))
        }
        #expect(counter.bf16GEMMs == 0 && counter.bf16SmallGEMMs == 0)
        #expect(counter.gemms > 0)
    }
}
