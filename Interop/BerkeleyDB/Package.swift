// swift-tools-version:6.0
// Real Berkeley DB 5.3 replication through repbroker: a multi-process replicated key-value store on the
// Base API (bdb-site), and the failover scenario that checks it (bdb-scenario). Needs libdb5.3-dev.
import PackageDescription

let package = Package(
    name: "BerkeleyDBInterop",
    dependencies: [.package(path: "repbroker")],
    targets: [
        .systemLibrary(name: "CBerkeleyDB", providers: [.apt(["libdb5.3-dev"])]),
        .target(
            name: "BerkeleyDBSite",
            dependencies: ["CBerkeleyDB", .product(name: "RepBrokerClient", package: "repbroker")]
        ),
        .target(
            name: "BerkeleyDBScenario",
            dependencies: [
                .product(name: "BrokerHarness", package: "repbroker"),
                .product(name: "BrokerDaemon", package: "repbroker"),
            ]
        ),
        .executableTarget(name: "bdb-site", dependencies: ["BerkeleyDBSite"]),
        // This package's own broker binary, so that its tests need nothing built elsewhere.
        .executableTarget(name: "bdb-brokerd", dependencies: [.product(name: "BrokerDaemon", package: "repbroker")]),
        // Also runs as `bdb-scenario broker` and `bdb-scenario site`: `swift run bdb-scenario` builds one product.
        .executableTarget(
            name: "bdb-scenario",
            dependencies: ["BerkeleyDBScenario", "BerkeleyDBSite", .product(name: "BrokerDaemon", package: "repbroker")]
        ),
        // The chaos run; like bdb-scenario, it runs itself as its brokers and Berkeley DB processes.
        .executableTarget(
            name: "bdb-chaos",
            dependencies: ["BerkeleyDBScenario", "BerkeleyDBSite", .product(name: "BrokerDaemon", package: "repbroker")]
        ),
        .testTarget(
            name: "BerkeleyDBTests",
            dependencies: ["BerkeleyDBScenario", .product(name: "BrokerHarness", package: "repbroker")]
        ),
    ]
)
