// swift-tools-version: 6.2
// 6.2 is the first version whose SwiftPM accepts the OpenMP flag (an unsafe flag) in a package
// that others depend on by version.
import PackageDescription

let applePlatforms: [Platform] = [.macOS, .iOS, .tvOS, .watchOS, .visionOS, .macCatalyst]

let package = Package(
    name: "swift-flash-attention",
    products: [
        .library(name: "FlashAttention", targets: ["FlashAttention"]),
        // Ring attention over MPI (context parallelism). Its MPI parts need the trait `MPI`
        // and Open MPI (pkg-config ompi-c); without them it builds, and reports it cannot run.
        .library(name: "FlashAttentionMPI", targets: ["FlashAttentionMPI"]),
        .executable(name: "attention-bench", targets: ["attention-bench"]),
        .executable(name: "attention-parity", targets: ["attention-parity"]),
    ],
    traits: [
        .trait(name: "OpenMP", description: "Run the flash kernels on OpenMP threads (libomp)."),
        .trait(name: "MPI", description: "Ring attention across processes (FlashAttentionMPI) over Open MPI (pkg-config ompi-c)."),
        .default(enabledTraits: ["OpenMP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // `make docs`: the DocC catalogue (Sources/FlashAttention/FlashAttention.docc).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // MARK: Public API
        .target(
            name: "FlashAttention",
            dependencies: ["CFlashAttention"],
            path: "Sources/FlashAttention"
        ),

        .target(
            name: "FlashAttentionMPI",
            dependencies: [
                "FlashAttention", "CFlashAttention", "CRingAttention",
                .target(name: "CMPI", condition: .when(traits: ["MPI"])),
            ],
            path: "Sources/FlashAttentionMPI"
        ),

        // MARK: Implementation
        // OpenMP and OpenBLAS on Linux. Apple platforms have neither in their toolchain: there
        // the kernels run on the calling thread and the naive reference takes cblas_sgemm from
        // Accelerate (built by review only: CI has no Mac).
        .target(
            name: "CFlashAttention",
            dependencies: [.target(name: "COpenBLAS", condition: .when(platforms: [.linux]))],
            path: "CSupport/CFlashAttention",
            cSettings: [
                .unsafeFlags(["-fopenmp"], .when(platforms: [.linux], traits: ["OpenMP"])),
            ],
            linkerSettings: [
                .linkedLibrary("omp5", .when(platforms: [.linux], traits: ["OpenMP"])),
                .linkedLibrary("m", .when(platforms: [.linux])),
                .linkedFramework("Accelerate", .when(platforms: applePlatforms)),
            ]
        ),
        // The ring over MPI; without the trait `MPI` every entry point returns an error.
        .target(
            name: "CRingAttention",
            dependencies: [
                "CFlashAttention",
                .target(name: "CMPI", condition: .when(traits: ["MPI"])),
            ],
            path: "CSupport/CRingAttention",
            cSettings: [
                .define("FA_WITH_MPI", .when(traits: ["MPI"])),
            ]
        ),
        .systemLibrary(
            name: "CMPI",
            path: "CSupport/CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        .systemLibrary(
            name: "COpenBLAS",
            path: "CSupport/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),

        // MARK: Tests
        .testTarget(
            name: "FlashAttentionTests",
            dependencies: ["FlashAttention", "CFlashAttention", "TestSupport", "CKernelProbe"],
            path: "Tests/FlashAttentionTests"
        ),
        .target(
            name: "CKernelProbe",
            dependencies: ["CFlashAttention"],
            path: "Tests/CKernelProbe"
        ),
        .testTarget(
            name: "RingAttentionTests",
            dependencies: ["FlashAttentionMPI", "FlashAttention"],
            path: "Tests/RingAttentionTests"
        ),
        .testTarget(
            name: "BenchmarkTests",
            dependencies: ["BenchmarkKit", "FlashAttention"],
            path: "Tests/BenchmarkTests"
        ),
        .testTarget(
            name: "ParityTests",
            dependencies: ["ParityKit", "AttentionTools", "FlashAttention", "TestSupport"],
            path: "Tests/ParityTests"
        ),
        .target(
            name: "TestSupport",
            dependencies: ["FlashAttention"],
            path: "Tests/TestSupport"
        ),

        // MARK: Executables
        .executableTarget(
            name: "attention-bench",
            dependencies: ["BenchmarkKit"],
            path: "Benchmarks/attention-bench"
        ),
        .executableTarget(
            name: "attention-parity",
            dependencies: ["ParityKit"],
            path: "Benchmarks/attention-parity"
        ),
        // Ring attention under mpirun: the check against single-process attention and the
        // float64 reference (make mpi-test), and the scaling benchmark.
        .executableTarget(
            name: "ring-attention",
            dependencies: [
                "FlashAttentionMPI", "FlashAttention", "TestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/ring-attention"
        ),
        // What the two tools share: argument parsing helpers and the `.npy` reader/writer
        // (tool-only types, kept out of the FlashAttention product).
        .target(
            name: "AttentionTools",
            dependencies: [
                "FlashAttention",
                "CFlashAttention",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/AttentionTools"
        ),
        .target(
            name: "ParityKit",
            dependencies: [
                "AttentionTools",
                "FlashAttention",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/ParityKit"
        ),
        .target(
            name: "BenchmarkKit",
            dependencies: [
                "AttentionTools",
                "FlashAttention",
                // The sgemm roof: OpenBLAS on Linux, Accelerate on Apple platforms.
                .target(name: "COpenBLAS", condition: .when(platforms: [.linux])),
                "CStreamRoof",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/BenchmarkKit",
            linkerSettings: [.linkedFramework("Accelerate", .when(platforms: applePlatforms))]
        ),
        // The benchmark's memory-bandwidth roof: a multi-threaded read stream (C, benchmark only).
        .target(
            name: "CStreamRoof",
            path: "Benchmarks/CStreamRoof",
            cSettings: [
                .unsafeFlags(["-fopenmp"], .when(platforms: [.linux], traits: ["OpenMP"])),
            ],
            linkerSettings: [
                .linkedLibrary("omp5", .when(platforms: [.linux], traits: ["OpenMP"])),
                .linkedLibrary("pthread", .when(platforms: [.linux])),
            ]
        ),
    ]
)
