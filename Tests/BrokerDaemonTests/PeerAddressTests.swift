// Peer addresses: wildcards are never kept, numeric addresses need no lookup, and a socket's local address
// (what a wildcard listener advertises) comes back with the listen port.
@testable import BrokerDaemon
import BrokerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PeerAddressTests {
    @Test(arguments: ["0.0.0.0:7001", "[::]:7001", "[0:0::0]:1"])
    func wildcardsAreRefused(text: String) {
        guard case .failure(let refused) = PeerAddress.parse(text, verified: false) else {
            Issue.record("\(text) was kept")
            return
        }
        #expect(refused.description.contains("wildcard"))
    }

    @Test(arguments: [("10.77.0.4:7001", false), ("[fe80::1]:9", false), ("hostb:7001", true), ("localhost:1", true)])
    func specificAddressesAreKept(text: String, isName: Bool) throws {
        let address = try PeerAddress.parse(text, verified: false).get()
        #expect(address.isName == isName)
        #expect((address.resolved != nil) == !isName, "numeric addresses need no lookup")
        #expect(address.needsResolution(now: 0) == isName)
    }

    @Test func loopbackAndWildcardAreTold() throws {
        #expect(try SocketAddress("127.0.0.1:1").isLoopback)
        #expect(try SocketAddress("127.9.9.9:1").isLoopback)
        #expect(try SocketAddress("[::1]:1").isLoopback)
        #expect(try !SocketAddress("10.0.0.1:1").isLoopback)
        #expect(try SocketAddress("0.0.0.0:1").isWildcard)
        #expect(try !SocketAddress("10.0.0.1:1").isWildcard)
    }

    @Test func theLocalAddressOfAConnectionCarriesTheListenPort() throws {
        let listener = try Socket.listenTCP(SocketAddress("127.0.0.1:0"))
        defer { Posix.close(descriptor: listener) }
        let port = try #require(Socket.localPort(listener))
        let fd = try Socket.connectTCPBlocking(SocketAddress("127.0.0.1:\(port)"))
        defer { Posix.close(descriptor: fd) }
        #expect(SocketAddress.local(of: fd, port: 7001)?.text == "127.0.0.1:7001")
    }

    @Test func theResolverAnswersOffTheCallersThread() throws {
        let resolver = PeerResolver()
        defer { resolver.stop() }
        resolver.request(.site(2), "localhost:7002")
        resolver.request(.site(3), "no-such-host.invalid:7003")
        var answers: [PeerResolver.Answer] = []
        for _ in 0..<500 where answers.count < 2 {
            answers += resolver.takeAnswers()
            usleep(10_000)
        }
        let byKey = Dictionary(uniqueKeysWithValues: answers.map { ($0.key, $0.result) })
        #expect(throws: Never.self) { try byKey[.site(2)]?.get() }
        #expect(throws: SocketAddress.ParseError.self) { try byKey[.site(3)]?.get() }
        #expect(byKey.count == 2)
    }
}
