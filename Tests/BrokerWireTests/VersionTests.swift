// Version ranges (PROTOCOL.md, "Versioning"): the highest version both sides speak, HELLO's range read before
// its layout, and REGISTER in both layouts.
import BrokerWire
import Testing

@Suite struct VersionTests {
    @Test func bothSidesUseTheHighestVersionTheyShare() {
        #expect(Wire.protocolVersions == 5...6)
        #expect(Wire.negotiate(5...6) == 6)
        #expect(Wire.negotiate(5...5) == 5, "a broker or client of the version before")
        #expect(Wire.negotiate(6...7) == 6, "the version after, which still speaks this one")
        #expect(Wire.negotiate(7...8) == nil)
        #expect(Wire.negotiate(3...4) == nil)
        #expect(Wire.negotiate(1...9) == 6)
    }

    @Test func aHelloSaysItsOldestVersionWhereProtocol5ReadsTheVersion() throws {
        let hello = HelloFrame(siteID: 2, incarnation: 1)
        let body = hello.body
        #expect(body[4] == 5 && body[5] == 0, "protocol 5 brokers check that this is 5")
        #expect(body[6] == 6 && body[7] == 0, "where protocol 5 left 0")
        #expect(body.withUnsafeBytes { HelloFrame.versions(of: $0) } == 5...6)
        var old = body
        old[6] = 0
        #expect(old.withUnsafeBytes { HelloFrame.versions(of: $0) } == 5...5, "a protocol 5 HELLO speaks 5 alone")
        let decoded = try old.withUnsafeBytes { try HelloFrame(body: $0) }
        #expect(decoded.versions == 5...5)
    }

    @Test func registerHasTheOlderLayoutAtVersion5AndTheRangeFrom6() throws {
        let newer = RegisterFrame(roles: .sender, pid: 7, group: "g", name: "w")
        #expect(newer.body.count == 20 + 2)
        #expect(newer.body.withUnsafeBytes { RegisterFrame.versions(of: $0) } == 5...6)
        let roundTrip = try newer.body.withUnsafeBytes { try RegisterFrame(body: $0) }
        #expect(roundTrip == newer)
        let older = RegisterFrame(versions: 5...5, roles: .sender, pid: 7, group: "g", name: "w")
        #expect(older.body.count == 16 + 2)
        #expect(older.body.withUnsafeBytes { RegisterFrame.versions(of: $0) } == 5...5)
        let decoded = try older.body.withUnsafeBytes { try RegisterFrame(body: $0) }
        #expect(decoded.versions == 5...5 && decoded.group == "g" && decoded.name == "w")
        // A version 6 REGISTER cut short of its fixed part, and one whose oldest is newer than its newest.
        let short = Array(newer.body.prefix(18))
        #expect(short.withUnsafeBytes { RegisterFrame.versions(of: $0) } == nil)
        var inverted = newer.body
        inverted[16] = 9
        #expect(throws: WireError.self) { try inverted.withUnsafeBytes { try RegisterFrame(body: $0) } }
    }
}
