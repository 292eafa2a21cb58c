// swift-tools-version:6.0
// cavpt-dist: Class-Aware Visual Prompt Tuning for CLIP as a data-parallel MPI trainer.
import PackageDescription

// Release builds drop bounds and overflow checks in the hot loops; tests build debug.
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "cavpt-dist",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "cavpt-dist", targets: ["cavpt-dist"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // System libraries and the tiny C shims Swift needs to reach them.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CJPEG", linkerSettings: [.linkedLibrary("jpeg")]),
        .target(name: "CPNG", linkerSettings: [.linkedLibrary("png16")]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CAlloc"),
        .target(name: "CSignals"),
        // oneDNN for the bf16 products of runtime.precision bf16 (Debian's build: OpenMP threads).
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        // The bf16 path's element-wise kernels in AVX-512 (BF16) intrinsics, with portable fallbacks.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),

        .target(name: "Tensor", dependencies: ["CBLAS", "CAlloc", "CDNNL", "CKernels"], swiftSettings: fast),
        // Reading untrusted files safely (a FIFO is refused, not waited on) and the safetensors format
        // (weights, checkpoints, the numerical tests' batches and gradients).
        .target(name: "Files", dependencies: ["Tensor"], swiftSettings: fast),
        // Resources/ holds the CLIP BPE vocabulary (open_clip's file), found by path at run time.
        .target(
            name: "CLIP", dependencies: ["Tensor", "Files", "CZlib"], exclude: ["Resources"], swiftSettings: fast,
            linkerSettings: [.linkedLibrary("z")]),
        .target(
            name: "Data", dependencies: ["Tensor", "Files", "CJPEG", "CPNG", .product(name: "Yams", package: "Yams")],
            swiftSettings: fast),
        .target(name: "PromptTuning", dependencies: ["Tensor", "CLIP"], swiftSettings: fast),
        .target(name: "Distributed", dependencies: ["CMPI"], swiftSettings: fast),
        // Pictures: raster canvas with an embedded font, PNG through zlib, SVG/PNG line charts.
        .target(name: "Figures", dependencies: ["CZlib"], swiftSettings: fast, linkerSettings: [.linkedLibrary("z")]),
        .target(
            name: "Training",
            dependencies: [
                "Tensor", "Files", "CLIP", "Data", "PromptTuning", "Distributed", "CSignals", "Figures",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: fast),
        // Figures for the performance notes (`bench`): peak rates, GEMM rates, the decode rate, the step.
        .target(
            name: "Benchmarks",
            dependencies: ["Training", "Files", "CLIP", "Data", "Distributed", "PromptTuning", "Tensor", "CDNNL"],
            swiftSettings: fast),
        .executableTarget(
            name: "cavpt-dist",
            dependencies: [
                "Training", "Benchmarks", "Files", "CLIP", "Data", "Distributed", "PromptTuning", "Tensor", "CBLAS",
                "Figures",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: fast),

        .testTarget(name: "TensorTests", dependencies: ["Tensor"]),
        .testTarget(name: "CLIPTests", dependencies: ["CLIP", "Files"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "Files", "Benchmarks"]),
        .testTarget(name: "FiguresTests", dependencies: ["Figures"]),
        .testTarget(name: "PromptTuningTests", dependencies: ["PromptTuning"]),
        // Launched under mpirun by DistributedTests; also holds the allreduce benchmark.
        .executableTarget(name: "DistributedCheck", dependencies: ["Distributed"], path: "Tests/DistributedCheck"),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "DistributedCheck"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Files", "cavpt-dist"]),
        // cluster/ scripts under real Slurm and mpirun, DistributedCheck as the MPI payload.
        .testTarget(name: "ClusterTests", dependencies: ["DistributedCheck"]),
    ]
)

// libFuzzer targets (fuzz/run.sh), only when CAVPT_FUZZ is set: they link only when built with
// `-sanitize=fuzzer`, so the normal build never sees them.
if Context.environment["CAVPT_FUZZ"] != nil {
    package.targets.append(.systemLibrary(name: "CLibFuzzer", path: "fuzz/CLibFuzzer"))
    for (name, dependencies) in [
        ("FuzzSafeTensors", ["Files"]),
        ("FuzzSplitJSON", ["Data"]),
        ("FuzzConfig", ["Training", "Data"]),
        ("FuzzTokenizer", ["CLIP"]),
        ("FuzzJPEG", ["Data", "CJPEG"]),
    ] as [(String, [Target.Dependency])] {
        package.targets.append(
            .executableTarget(
                name: name, dependencies: dependencies + ["CLibFuzzer"],
                path: "fuzz/Targets/\(name)"))
    }
}
