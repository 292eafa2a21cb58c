// CPython's `random` module, bit for bit, for what Dassl's few-shot sampler uses: MT19937 seeded
// as `random.seed(int)` seeds it (init_by_array over the integer's 32-bit words), `getrandbits`,
// `_randbelow` by rejection, and `random.sample` with its pool/set selection rule. With it a seed
// selects exactly the images CoOp (and every method evaluated on its subsets) trained on.
import Foundation

public struct PythonRandom: Sendable {
    static let n = 624, m = 397
    var state = [UInt32](repeating: 0, count: 624)
    var index = 625

    /// `random.seed(seed)` for an int seed (its absolute value, as CPython takes it).
    public init(seed: Int) {
        var magnitude = seed.magnitude
        var key: [UInt32] = []
        repeat {
            key.append(UInt32(truncatingIfNeeded: magnitude))
            magnitude >>= 32
        } while magnitude > 0
        initByArray(key)
    }

    mutating func initGenrand(_ s: UInt32) {
        state[0] = s
        for i in 1..<Self.n {
            state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i)
        }
        index = Self.n
    }

    mutating func initByArray(_ key: [UInt32]) {
        initGenrand(19_650_218)
        var i = 1, j = 0
        for _ in 0..<max(Self.n, key.count) {
            state[i] = (state[i] ^ ((state[i - 1] ^ (state[i - 1] >> 30)) &* 1_664_525)) &+ key[j] &+ UInt32(j)
            i += 1; j += 1
            if i >= Self.n { state[0] = state[Self.n - 1]; i = 1 }
            if j >= key.count { j = 0 }
        }
        for _ in 0..<(Self.n - 1) {
            state[i] = (state[i] ^ ((state[i - 1] ^ (state[i - 1] >> 30)) &* 1_566_083_941)) &- UInt32(i)
            i += 1
            if i >= Self.n { state[0] = state[Self.n - 1]; i = 1 }
        }
        state[0] = 0x8000_0000
        index = Self.n
    }

    /// MT19937's next 32-bit output (genrand_uint32).
    public mutating func nextUInt32() -> UInt32 {
        if index >= Self.n {
            for k in 0..<Self.n {
                let y = (state[k] & 0x8000_0000) | (state[(k + 1) % Self.n] & 0x7fff_ffff)
                state[k] = state[(k + Self.m) % Self.n] ^ (y >> 1) ^ (y & 1 == 0 ? 0 : 0x9908_b0df)
            }
            index = 0
        }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// `random.getrandbits(k)` for 0 < k ≤ 64: 32-bit words, least significant first, the last
    /// one's surplus high bits dropped.
    public mutating func getrandbits(_ k: Int) -> UInt64 {
        precondition(k > 0 && k <= 64)
        if k <= 32 { return UInt64(nextUInt32() >> UInt32(32 - k)) }
        let low = UInt64(nextUInt32())
        let high = UInt64(nextUInt32() >> UInt32(64 - k))
        return low | high << 32
    }

    /// `random._randbelow(n)`: getrandbits(n.bit_length()) until below n.
    public mutating func randbelow(_ n: Int) -> Int {
        guard n > 0 else { return 0 }
        let bits = Int.bitWidth - n.leadingZeroBitCount
        var r = getrandbits(bits)
        while r >= UInt64(n) { r = getrandbits(bits) }
        return Int(r)
    }

    /// `random.sample(population, k)`: indices into a population of `n`, in selection order.
    public mutating func sample(populationSize n: Int, count k: Int) -> [Int] {
        precondition(k >= 0 && k <= n)
        var result: [Int] = []
        result.reserveCapacity(k)
        // CPython: a list of n beats a set of k when n <= setsize.
        var setsize = 21
        if k > 5 { setsize += Int(pow(4.0, ceil(log(Double(k * 3)) / log(4.0)))) }
        if n <= setsize {
            var pool = Array(0..<n)
            for i in 0..<k {
                let j = randbelow(n - i)
                result.append(pool[j])
                pool[j] = pool[n - i - 1]
            }
        } else {
            var selected = Set<Int>()
            for _ in 0..<k {
                var j = randbelow(n)
                while selected.contains(j) { j = randbelow(n) }
                selected.insert(j)
                result.append(j)
            }
        }
        return result
    }
}
