// Peer addresses as the core checks them, with no system call: HOST:PORT, never a wildcard; numeric or a name.
@testable import BrokerCore
import Testing

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
        #expect(address.text == text)
        let parsed = try #require(HostPort(text))
        #expect((parsed.numeric != nil) == !isName, "numeric addresses need no lookup")
    }

    @Test(arguments: ["hostb", "hostb:", ":7001", "hostb:70000", "[::1:7001", "host b:1", "1.2.3.4:0x10"])
    func malformedAddressesAreRefused(text: String) {
        guard case .failure(let refused) = PeerAddress.parse(text, verified: false) else {
            Issue.record("\(text) was kept")
            return
        }
        #expect(refused.description.contains("HOST:PORT"))
    }

    @Test func loopbackAndWildcardAreToldWithoutTheSystem() throws {
        #expect(try #require(HostPort("127.9.9.9:1")).isLoopback)
        #expect(try #require(HostPort("[::1]:1")).isLoopback)
        #expect(try !#require(HostPort("10.0.0.1:1")).isLoopback)
        #expect(try #require(HostPort("0.0.0.0:1")).isWildcard)
        #expect(try #require(HostPort("[::]:1")).isWildcard)
    }
}
