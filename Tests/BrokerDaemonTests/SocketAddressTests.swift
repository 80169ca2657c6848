// Socket addresses as the shell resolves them: loopback and wildcard told, a connection's local address
// (what a wildcard listener advertises) with the listen port, names resolved off the loop's thread.
@testable import BrokerDaemon
import BrokerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SocketAddressTests {
    @Test func loopbackAndWildcardAreTold() throws {
        #expect(try SocketAddress("127.0.0.1:1").isLoopback)
        #expect(try SocketAddress("127.9.9.9:1").isLoopback)
        #expect(try SocketAddress("[::1]:1").isLoopback)
        #expect(try !SocketAddress("10.0.0.1:1").isLoopback)
        #expect(try SocketAddress("0.0.0.0:1").isWildcard)
        #expect(try !SocketAddress("10.0.0.1:1").isWildcard)
    }

    /// The core reads HOST:PORT text without libc (HostPort); the shell with inet_pton (SocketAddress). They
    /// must agree on what is a numeric address, a wildcard and a loopback.
    @Test(arguments: ["127.0.0.1:1", "10.0.0.1:7001", "0.0.0.0:7001", "[::]:7001", "[::1]:1", "[::ffff:0.0.0.0]:1",
                      "[::ffff:127.0.0.1]:1", "[fe80::1:2]:9", "[1:2:3:4:5:6:7:8]:9", "[1:2:3:4:5:6:7:8:9]:9",
                      "1.2.3:4", "0:7001", "256.1.1.1:1", "01.2.3.4:5", "00.0.0.0:1", "[::1.2.3.4]:5", "[1::2::3]:4", "host.example:1"])
    func theCoresParserAgreesWithTheShells(text: String) {
        let core = HostPort(text)
        let shell = SocketAddress(numeric: text)
        #expect((core?.numeric != nil) == (shell != nil), "numeric: \(text)")
        if let core, let shell {
            #expect(core.isWildcard == shell.isWildcard, "wildcard: \(text)")
            #expect(core.isLoopback == shell.isLoopback, "loopback: \(text)")
        }
    }

    @Test func theLocalAddressOfAConnectionCarriesTheListenPort() throws {
        let listener = try Socket.listenTCP(SocketAddress("127.0.0.1:0"))
        let port = try #require(Socket.localPort(listener.number))
        let connection = try Socket.connectTCPBlocking(SocketAddress("127.0.0.1:\(port)"))
        #expect(SocketAddress.local(of: connection.number, port: 7001)?.text == "127.0.0.1:7001")
    }

    @Test func theResolverAnswersOffTheCallersThread() throws {
        let resolver = Resolver()
        defer { resolver.stop() }
        resolver.request("localhost:7002")
        resolver.request("no-such-host.invalid:7003")
        var answers: [Resolver.Answer] = []
        for _ in 0..<500 where answers.count < 2 {
            answers += resolver.takeAnswers()
            usleep(10_000)
        }
        let byKey = Dictionary(uniqueKeysWithValues: answers.map { ($0.text, $0.result) })
        #expect(throws: Never.self) { try byKey["localhost:7002"]?.get() }
        #expect(throws: SocketAddress.ParseError.self) { try byKey["no-such-host.invalid:7003"]?.get() }
        #expect(byKey.count == 2)
    }
}
