// swift-tools-version:6.0
// repbroker: a per-host communications broker for Berkeley DB replication groups.
// No package dependencies: the toolchain only.
import PackageDescription

let package = Package(
    name: "repbroker",
    products: [
        .library(name: "RepBrokerClient", targets: ["RepBrokerClient"]),
        .library(name: "BrokerDaemon", targets: ["BrokerDaemon"]),
        .library(name: "BrokerHarness", targets: ["BrokerHarness"]),
        .executable(name: "repbrokerd", targets: ["repbrokerd"]),
        .executable(name: "repbroker", targets: ["repbroker"]),
        .executable(name: "repbroker-bench", targets: ["repbroker-bench"]),
        .executable(name: "repbroker-sim", targets: ["repbroker-sim"]),
    ],
    targets: [
        // The language-neutral IPC contract: frame layouts, constants and the C helpers Swift cannot express.
        .target(
            name: "CRepBrokerIPC",
            path: "ipc",
            exclude: ["PROTOCOL.md", "vectors"],
            sources: ["src"],
            publicHeadersPath: "include"
        ),
        .target(name: "BrokerSystem", dependencies: ["CRepBrokerIPC"]),
        .target(name: "BrokerWire", dependencies: ["CRepBrokerIPC"]),
        // The broker as a state machine: events in, actions out; no clock, no system call (no BrokerSystem).
        .target(name: "BrokerCore", dependencies: ["BrokerWire"]),
        // The I/O shell around the core: epoll, sockets, rings' memory, eventfds, the clock.
        .target(name: "BrokerDaemon", dependencies: ["BrokerCore", "BrokerSystem", "BrokerWire", "CRepBrokerIPC"]),
        .target(name: "RepBrokerClient", dependencies: ["BrokerSystem", "BrokerWire", "CRepBrokerIPC"]),
        // Real processes for the demo, benchmarks and integration tests: brokers, clients, ports, deadlines.
        .target(name: "BrokerHarness", dependencies: ["BrokerDaemon", "BrokerSystem"]),
        .executableTarget(name: "repbrokerd", dependencies: ["BrokerDaemon"]),
        // Whole groups of cores in one process on virtual time, with seeded faults and invariants.
        .target(name: "BrokerSim", dependencies: ["BrokerCore", "BrokerWire"]),
        .executableTarget(name: "repbroker-sim", dependencies: ["BrokerSim", "BrokerCore"]),
        // The bench's physical reference: a two-hop relay over shared memory with no broker.
        .target(name: "CRelayReference"),
        // The operator's tool: stats, sites, remove-site, send, recv, request, demo, daemon.
        .executableTarget(
            name: "repbroker",
            dependencies: ["BrokerDaemon", "BrokerHarness", "BrokerSystem", "BrokerWire", "RepBrokerClient"]
        ),
        // The benchmarks and the workers they start.
        .executableTarget(
            name: "repbroker-bench",
            dependencies: ["BrokerDaemon", "BrokerHarness", "BrokerSystem", "BrokerWire", "RepBrokerClient", "CRelayReference"]
        ),
        .testTarget(name: "BrokerSystemTests", dependencies: ["BrokerSystem", "BrokerHarness"]),
        .testTarget(name: "BrokerWireTests", dependencies: ["BrokerWire", "BrokerSystem", "CRepBrokerIPC"]),
        .testTarget(name: "BrokerCoreTests", dependencies: ["BrokerCore", "BrokerWire"]),
        .testTarget(name: "SimulationTests", dependencies: ["BrokerSim", "BrokerCore", "BrokerWire"]),
        .testTarget(name: "BrokerDaemonTests", dependencies: ["BrokerCore", "BrokerDaemon", "BrokerSystem", "BrokerWire"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["BrokerDaemon", "BrokerHarness", "BrokerSystem", "BrokerWire", "RepBrokerClient"]
        ),
    ]
)
