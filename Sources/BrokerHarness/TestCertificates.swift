// Certificates for TLS tests and benchmarks, made with the openssl command-line tool: a CA, site
// certificates naming their site (SAN URI repbroker://site/ID), expired ones, and repbrokerd's options for them.
import BrokerSystem
import Foundation

/// A CA and site certificates made with the openssl command-line tool in a temporary directory.
public final class TestCertificates: @unchecked Sendable {
    public let directory: String

    public init() throws {
        directory = NSTemporaryDirectory() + "rbtls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    public func path(_ name: String) -> String { directory + "/" + name }

    @discardableResult
    public func openssl(_ arguments: [String]) throws -> String { try runToEnd("/usr/bin/openssl", arguments, in: directory) }

    /// Runs the openssl tool with `input` on its standard input; its output and error together, whatever its
    /// exit status (s_client's says how the connection ended, not whether it was made).
    public func openssl(_ arguments: [String], input: String, timeout: Double = 30) throws -> String {
        let errors = path("openssl-\(UUID().uuidString).err")
        let child = try ChildProcess(name: "openssl", executable: "/usr/bin/openssl", arguments: arguments,
                                     stderrPath: errors, directory: directory)
        child.write(input)
        child.closeInput()
        if child.waitForExit(timeout: timeout) == nil {
            child.kill9()
            throw HarnessError("openssl \(arguments.first ?? "") did not finish in \(Int(timeout)) s")
        }
        child.waitForOutputEnd(timeout: 5)
        return child.lines.joined(separator: "\n") + "\n" + ((try? String(contentsOfFile: errors, encoding: .utf8)) ?? "")
    }

    /// The SHA-256 of the first certificate (PEM) in `text`, as --tls-pin takes it.
    public func sha256(ofCertificateIn text: String) throws -> String {
        guard let begin = text.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = text.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<text.endIndex) else {
            throw HarnessError("no certificate in: \(text.prefix(500))")
        }
        let name = "shown-\(UUID().uuidString)"
        try (String(text[begin.lowerBound..<end.upperBound]) + "\n").write(toFile: path("\(name).pem"), atomically: true,
                                                                          encoding: .utf8)
        return try sha256(name)
    }

    /// A self-signed CA: NAME.key and NAME.pem.
    public func makeCA(_ name: String) throws {
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", "\(name).key", "-out", "\(name).pem", "-days", "30", "-subj", "/CN=\(name)"])
    }

    /// NAME.key and NAME.pem signed by `ca`, with `san` as its subjectAltName (nil: none).
    public func makeCertificate(_ name: String, ca: String, san: String?) throws {
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"])
        var arguments = ["x509", "-req", "-in", "\(name).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca).key",
                         "-CAcreateserial", "-out", "\(name).pem", "-days", "30"]
        if let san {
            try "subjectAltName=\(san)\n".write(toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
            arguments += ["-extfile", "\(name).ext"]
        }
        try openssl(arguments)
    }

    /// NAME.key and NAME.pem signed by `ca`, naming `site`, valid only in January 2020 (openssl ca backdates).
    public func makeExpiredCertificate(_ name: String, ca: String, site: Int32) throws {
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"])
        try "".write(toFile: path("index.txt"), atomically: true, encoding: .utf8)
        try "01\n".write(toFile: path("serial"), atomically: true, encoding: .utf8)
        try """
            [ca]
            default_ca = test
            [test]
            database = index.txt
            serial = serial
            new_certs_dir = .
            default_md = sha256
            policy = any
            [any]
            commonName = supplied
            [site]
            subjectAltName = URI:repbroker://site/\(site)

            """.write(toFile: path("ca.cnf"), atomically: true, encoding: .utf8)
        try openssl(["ca", "-batch", "-config", "ca.cnf", "-cert", "\(ca).pem", "-keyfile", "\(ca).key", "-in", "\(name).csr",
                     "-out", "\(name).pem", "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                     "-extensions", "site", "-notext"])
    }

    public func context(_ name: String, ca: String?) throws -> TLSContext {
        try TLSContext(certificate: path("\(name).pem"), key: path("\(name).key"), ca: ca.map { path("\($0).pem") })
    }

    /// Runs where OpenSSL 3 and its command-line tool are installed, and always in CI (.ci/run installs them),
    /// so that CI cannot skip TLS tests.
    public static let testsRun = ProcessInfo.processInfo.environment["CI"] != nil
        || (TLSContext.available() == nil && FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"))

    /// A CA named `ca` and, for each site, siteN.pem and siteN.key naming it (SAN URI repbroker://site/N).
    public static func group(sites: [Int32], ca: String = "ca") throws -> TestCertificates {
        let certificates = try TestCertificates()
        try certificates.makeCA(ca)
        for site in sites { try certificates.makeSite(site, ca: ca) }
        return certificates
    }

    /// siteN.pem and siteN.key signed by `ca`, naming site N (`name` picks other file names).
    public func makeSite(_ site: Int32, ca: String = "ca", name: String? = nil) throws {
        try makeCertificate(name ?? "site\(site)", ca: ca, san: "URI:repbroker://site/\(site)")
    }

    /// repbrokerd's TLS options for the certificate `name` and the CA `ca` (nil: none).
    public func brokerArguments(_ name: String, ca: String? = "ca") -> [String] {
        var arguments = ["--tls-cert", path("\(name).pem"), "--tls-key", path("\(name).key")]
        if let ca { arguments += ["--tls-ca", path("\(ca).pem")] }
        return arguments
    }

    /// The SHA-256 of a certificate, as --tls-pin takes it.
    public func sha256(_ name: String) throws -> String {
        let fingerprint = try openssl(["x509", "-in", "\(name).pem", "-noout", "-fingerprint", "-sha256"])
        return fingerprint.split(separator: "=").last.map { $0.replacingOccurrences(of: ":", with: "") }?
            .trimmingCharacters(in: .whitespacesAndNewlines).lowercased() ?? ""
    }
}
