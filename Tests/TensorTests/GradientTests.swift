// Finite-difference checks of every op's backward, and the frozen-weight guarantees.
import Foundation
import Testing

@testable import Tensor

private func r(_ shape: [Int], _ seed: UInt64, std: Float = 1) -> Tensor { .randn(shape, std: std, seed: seed) }
private let tolerance: Float = 1e-2

private func expectGradients(
    _ inputs: [Tensor], _ trainable: [Bool]? = nil, eps: Float = 1e-2,
    _ op: ([Var]) -> Var, sourceLocation: SourceLocation = #_sourceLocation
) {
    let errs = gradientCheck(inputs, trainable: trainable ?? inputs.map { _ in true }, eps: eps, op)
    #expect(!errs.isEmpty, sourceLocation: sourceLocation)
    for e in errs { #expect(e < tolerance, "relative gradient error \(e)", sourceLocation: sourceLocation) }
}

@Suite struct OpGradients {
    @Test func linearWithBias() {
        expectGradients([r([2, 3, 5], 1), r([4, 5], 2), r([4], 3)]) { linear($0[0], $0[1], $0[2]) }
    }
    @Test func linearWithoutBias() { expectGradients([r([6, 5], 4), r([3, 5], 5)]) { linear($0[0], $0[1]) } }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matmulAllTransposes(transA: Bool, transB: Bool) {
        let a = transA ? r([4, 3], 6) : r([3, 4], 6)
        let b = transB ? r([5, 4], 7) : r([4, 5], 7)
        expectGradients([a, b]) { matmul($0[0], $0[1], transA: transA, transB: transB) }
    }

    @Test(arguments: [false, true])
    func batchedMatmul(transB: Bool) {
        let b = transB ? r([3, 5, 4], 9) : r([3, 4, 5], 9)
        expectGradients([r([3, 2, 4], 8), b]) { bmm($0[0], $0[1], transB: transB) }
    }

    @Test func addMulScale() {
        expectGradients([r([3, 4], 10), r([3, 4], 11)]) { $0[0] + $0[1] }
        expectGradients([r([3, 4], 12), r([3, 4], 13)]) { $0[0] * $0[1] }
        expectGradients([r([3, 4], 14)]) { 0.37 * $0[0] }
        // The same input on both sides: gradients from two paths must add.
        expectGradients([r([3, 4], 15)]) { $0[0] * $0[0] + $0[0] }
    }

    @Test func broadcastAdd() {
        expectGradients([r([2, 3, 4], 16), r([3, 4], 17)]) { addBroadcast($0[0], $0[1]) }
        expectGradients([r([5, 4], 18), r([4], 19)]) { addBroadcast($0[0], $0[1]) }
    }

    @Test func quickGELUGradient() { expectGradients([r([4, 6], 20, std: 2)]) { quickGELU($0[0]) } }

    @Test func reductionsAndReshape() {
        expectGradients([r([3, 4], 21)]) { sum($0[0]) }
        expectGradients([r([3, 4], 22)]) { mean($0[0]) }
        expectGradients([r([3, 4], 23)]) { reshape($0[0], [2, 6]) * reshape($0[0], [2, 6]) }
    }

    @Test func tokenConcatSliceGather() {
        // [n, S, d] parts plus a shared [S, d] part (visual prompts).
        expectGradients([r([2, 3, 4], 24), r([2, 4], 25), r([2, 1, 4], 26)]) {
            concatTokens([$0[0], $0[1], $0[2]], samples: 2)
        }
        expectGradients([r([2, 5, 3], 27)]) { sliceTokens($0[0], 1..<4) }
        expectGradients([r([5, 3], 28)]) { gatherRows($0[0], [4, 0, 4, 2, 4]) } // repeats scatter-add
        expectGradients([r([4, 2, 3], 29)]) { sliceLeading($0[0], 1..<3) }
    }

    @Test func patchEmbedding() {
        expectGradients([r([2, 3, 8, 8], 29), r([5, 3, 4, 4], 30)]) { patchEmbed($0[0], $0[1]) }
    }

    @Test func layerNormAllInputs() {
        expectGradients([r([3, 2, 6], 31, std: 2), r([6], 32), r([6], 33)]) { layerNorm($0[0], $0[1], $0[2]) }
    }

    @Test func l2Normalization() { expectGradients([r([4, 5], 34)]) { l2Normalize($0[0]) } }

    @Test func maskedSoftmax() {
        expectGradients([r([2, 4, 4], 35)]) { softmax($0[0], mask: causalMask(4)) }
        expectGradients([r([3, 5], 36)]) { softmax($0[0]) }
    }

    @Test func multiHeadAttention() {
        // 2 heads of width 3; every mask kind; gradients into q and the packed keys/values.
        let q = r([2, 3, 6], 37), kv = r([2, 5, 12], 38)
        expectGradients([q, kv]) { attention($0[0], $0[1], heads: 2) }
        expectGradients([r([2, 4, 6], 39), r([2, 4, 12], 40)]) {
            attention($0[0], $0[1], heads: 2, mask: .causal(offset: 0))
        }
        expectGradients([q, kv]) { attention($0[0], $0[1], heads: 2, mask: .prefix([1, 3, 5, 2, 4, 5])) }
    }

    @Test func crossEntropyHardAndSoft() {
        expectGradients([r([4, 5], 41, std: 2)]) { crossEntropy($0[0], .hard([0, 3, 4, 1])) }
        var soft = [Float](repeating: 0.2, count: 20)
        soft[3] = 1; soft[5] = 0; soft[6] = 0; soft[7] = 0; soft[8] = 0; soft[9] = 0
        let target = Tensor(shape: [4, 5], values: soft)
        expectGradients([r([4, 5], 42, std: 2)]) { crossEntropy($0[0], .soft(target), reduction: .sum) }
    }

    @Test func attentionMatchesComposedOps() {
        // The fused op equals softmax(Q Kᵀ/√hd + mask) V built from bmm/softmax for one head.
        let q = r([2, 4, 3], 43), kv = r([2, 4, 6], 44)
        let fused = attention(Var(q), Var(kv), heads: 1, mask: .causal(offset: 0)).value
        let k = Tensor(uninitialized: [2, 4, 3]), v = Tensor(uninitialized: [2, 4, 3])
        for row in 0..<8 {
            (k.data + row * 3).update(from: kv.data + row * 6, count: 3)
            (v.data + row * 3).update(from: kv.data + row * 6 + 3, count: 3)
        }
        let scores = (1 / Float(3).squareRoot()) * bmm(Var(q), Var(k), transB: true)
        let composed = bmm(softmax(scores, mask: causalMask(4)), Var(v)).value
        for i in 0..<fused.count { #expect(abs(fused.data[i] - composed.data[i]) < 1e-5) }
    }
}

@Suite struct FrozenWeights {
    @Test func frozenWeightGetsNoGradientAndOneGEMM() {
        let x = Var(trainable: .randn([8, 16], seed: 1))
        let w = Var(.randn([4, 16], seed: 2)) // frozen
        let b = Var(.randn([4], seed: 3))
        let y = linear(x, w, b)
        let counter = OpCounter()
        BLAS.$counter.withValue(counter) { sum(y).backward() }
        #expect(counter.gemms == 1) // dx only; no dW
        #expect(w.grad == nil && b.grad == nil)
        #expect(x.grad != nil)
    }

    @Test func constantsRecordNothing() {
        let x = Var(.randn([3, 4], seed: 4))
        let y = quickGELU(linear(x, Var(.randn([2, 4], seed: 5))))
        #expect(!y.requiresGrad && y.isLeaf)
    }

    @Test func backwardReleasesActivations() {
        weak var intermediate: Var?
        let p = Var(trainable: .randn([3, 4], seed: 6))
        do {
            let h = quickGELU(p)
            intermediate = h
            let loss = sum(h * h)
            loss.backward()
        }
        #expect(intermediate == nil)
        #expect(p.grad != nil)
    }
}

@Suite struct GradCheckItself {
    @Test func detectsAWrongBackward() {
        // x² with a backward that forgets the factor 2: the checker must report an O(1) error.
        let errs = gradientCheck([.randn([3, 3], seed: 50)], trainable: [true]) { v in
            let x = v[0]
            let y = Tensor(uninitialized: x.shape)
            for i in 0..<y.count { y.data[i] = x.value.data[i] * x.value.data[i] }
            return Var.op(y, [x]) { dy in
                let dx = Tensor(uninitialized: x.shape)
                for i in 0..<dx.count { dx.data[i] = dy.data[i] * x.value.data[i] }
                x.accumulate(dx)
            }
        }
        #expect(errs[0] > 0.3)
    }
}

@Suite struct FastMathTests {
    @Test func fastExpMatchesLibm() {
        var worst: Float = 0
        var x: Float = -87
        while x < 87 {
            let exact = Float(exp(Double(x)))
            worst = max(worst, abs(fastExp(x) - exact) / exact)
            x += 0.0137
        }
        #expect(worst < 4e-7, "max relative error \(worst)")
        #expect(fastExp(0) == 1)
        #expect(fastExp(-1000) < 1e-37 && fastExp(-1000) >= 0)
    }
}
