// `bench`'s own arguments: the architecture's shapes and the bounds every number must be within
// (one `error:` line otherwise), kept apart from the benchmarks themselves.
import ArgumentParser
import CLIP
import Foundation

enum BenchArguments {
    /// The shapes of `--arch` (ViT-B/32, ViT-B/16, ViT-L/14; case and the slash optional).
    static func shape(_ arch: String) throws -> (name: String, shape: CLIPShape) {
        let key = arch.lowercased().replacingOccurrences(of: "/", with: "").replacingOccurrences(of: "-", with: "")
        guard
            let found = CLIPShape.named.first(where: {
                $0.name.lowercased().replacingOccurrences(of: "/", with: "").replacingOccurrences(of: "-", with: "")
                    == key
            })
        else {
            throw ValidationError(
                "--arch must be one of \(CLIPShape.named.map(\.name).joined(separator: ", ")), got '\(arch)'")
        }
        return found
    }

    /// An integer option within lo...hi.
    static func check(_ name: String, _ value: Int, _ range: ClosedRange<Int>) throws {
        guard range.contains(value) else {
            throw ValidationError("--\(name) must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
        }
    }

    /// `--seconds`: a finite positive number of seconds, at most ten minutes.
    static func checkSeconds(_ value: Double) throws {
        guard value.isFinite, value > 0, value <= 600 else {
            throw ValidationError("--seconds must be more than 0 and at most 600, got \(value)")
        }
    }

    /// `--threads 1,2`: positive counts, at most 4 × the CPUs.
    static func threadCounts(_ list: String) throws -> [Int] {
        let parts = list.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let counts = parts.compactMap { Int($0) }
        let limit = 4 * ProcessInfo.processInfo.activeProcessorCount
        guard !parts.isEmpty, counts.count == parts.count, counts.allSatisfy({ $0 > 0 && $0 <= limit }) else {
            throw ValidationError("--threads must list integers from 1 to \(limit), got '\(list)'")
        }
        return counts
    }
}
