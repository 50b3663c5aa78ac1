// swift-tools-version:6.0
import PackageDescription

// The fuzz targets of flows-fcgi: one libFuzzer executable per target, each linking the main package's FlowCore.
// A separate package, so the normal build never pays for them. Build and run them with `scripts/fuzz`, which adds
// `-sanitize=fuzzer,address` (to FlowCore too, for coverage). Each main.swift ends by calling libFuzzer's driver
// (`runLibFuzzer`): SwiftPM renames an executable's `main` on Linux, so libFuzzer's own `main` cannot be used.

/// The main package's identity: the name of the folder it is checked out in (path dependencies are named so).
let mainPackage = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "main").lowercased()

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The fuzz targets: executable name and source folder under `Sources/`.
let fuzzTargets = [
    "FuzzEnvelope", "FuzzBase64", "FuzzAppointment", "FuzzExpense", "FuzzPEM", "FuzzWebhook", "FuzzCGI",
]

let package = Package(
    name: "flows-fcgi-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .target(name: "CLibFuzzer"),
        .target(
            name: "FuzzSupport",
            dependencies: ["CLibFuzzer", .product(name: "FlowCore", package: mainPackage)],
            swiftSettings: swiftSettings
        ),
    ] + fuzzTargets.map { name in
        .executableTarget(
            name: name,
            dependencies: ["FuzzSupport", .product(name: "FlowCore", package: mainPackage)],
            swiftSettings: swiftSettings
        )
    },
    swiftLanguageModes: [.v6]
)
