// The decode + augment benchmark runs on real photos and reports a rate (never asserted on time).
import Benchmarks
import Testing

@testable import Data

@Suite struct BenchmarkTests {
    @Test func benchmarkRunsOnFixturePhotos() throws {
        let paths = ["landscape_coffee.jpg", "portrait_astronaut.jpg", "cmyk_chelsea.jpg"].map {
            fixtureFolder + "/" + $0
        }
        let rate = try benchmarkDecodeAugment(paths: paths, resolution: 32, threads: 2, seconds: 0.2)
        #expect(rate > 0)
        let missing = thrownError {
            try benchmarkDecodeAugment(paths: ["/nonexistent.jpg"], resolution: 32, threads: 1, seconds: 0.1)
        }
        #expect("\(missing!)" == "/nonexistent.jpg: cannot open: No such file or directory")
    }
}
