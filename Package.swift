// swift-tools-version:6.0
import PackageDescription

/// Settings every Swift target shares: Swift 6 language mode is the package default.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "flows-fcgi",
    products: [
        .executable(name: "flows-fcgi", targets: ["flows-fcgi"]),
        .library(name: "FlowCore", targets: ["FlowCore"]),
        .library(name: "FlowStorePostgres", targets: ["FlowStorePostgres"]),
    ],
    targets: [
        .systemLibrary(name: "CFlowsFastCGI", providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CFlowsOpenSSL", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CFlowsSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CFlowsPostgres", providers: [.apt(["libpq-dev"])]),
        // Header only: atomic operations on the memory-mapped metrics files.
        .systemLibrary(name: "CFlowsAtomics"),
        .target(
            name: "FlowCore",
            dependencies: ["CFlowsAtomics", "CFlowsOpenSSL", "CFlowsSQLite", "FlowStorePostgres"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "flows-fcgi",
            dependencies: ["FlowCore", "CFlowsFastCGI"],
            swiftSettings: swiftSettings
        ),
        // PostgreSQL through libpq (issue 18). libpq is loaded with dlopen on the first connection (see
        // Sources/CFlowsPostgres/shim.h), never linked: FlowCore (and so the executable) depends on this target
        // with no NEEDED entry for libpq.
        .target(
            name: "FlowStorePostgres",
            dependencies: ["CFlowsPostgres"],
            exclude: ["DESIGN.md"],
            swiftSettings: swiftSettings
        ),
        // The throwaway PostgreSQL servers the tests start (initdb into /tmp, a free port).
        .target(
            name: "PostgresTestSupport",
            dependencies: ["FlowStorePostgres"],
            path: "Tests/PostgresTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowStorePostgresTests",
            dependencies: ["FlowStorePostgres", "PostgresTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FlowCoreTests",
            dependencies: ["FlowCore", "PostgresTestSupport"],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
