// `bench`'s own arguments: out-of-range numbers and unknown names are one `error:` line, non-zero exit,
// before any work (no model is built, no memory taken).
import Foundation
import Testing

@Suite struct BenchArguments {
    @Test(arguments: [
        (["bench", "step", "--classes", "0"], "--classes"),
        (["bench", "step", "--batch", "0"], "--batch"),
        (["bench", "step", "--steps=-2"], "--steps"),
        (["bench", "step", "--eot", "500"], "--eot"),
        (["bench", "step", "--arch", "ViT-H/14"], "--arch"),
        (["bench", "step", "--recompute", "everything"], "--recompute"),
        (["bench", "gemm", "--rows", "0"], "--rows"),
        (["bench", "gemm", "--rows", "900000000"], "--rows"),
        (["bench", "gemm", "--seconds=-1"], "--seconds"),
        (["bench", "gemm", "--seconds", "inf"], "--seconds"),
        (["bench", "gemm", "--threads", "0,2"], "--threads"),
        (["bench", "gemm", "--arch", "RN50"], "--arch"),
        (["bench", "data", "--seconds=-1", "x.jpg"], "--seconds"),
        (["bench", "data", "--resolution", "0", "x.jpg"], "--resolution"),
    ])
    func outOfRangeIsOneLine(_ arguments: [String], _ option: String) throws {
        let r = try cavptDist(arguments)
        #expect(r.status != 0)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(errors.count == 1 && errors.first?.contains(option) == true, "\(arguments): \(r.stderr)")
        #expect(r.stdout.isEmpty, "\(arguments) did work: \(r.stdout)")
    }
}
