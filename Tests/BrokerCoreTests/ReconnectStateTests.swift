// What a link carries from one connection to the next, found by the simulator (each also has a seed in
// RegressionSeedTests): control frames that still mean something go on the new connection; a CREDIT or a
// PEER_RECEIVER queued for the old one does not.
@testable import BrokerCore
import BrokerWire
import Testing

@Suite struct ReconnectStateTests {
    func types(_ link: PeerLink) -> [FrameType] {
        link.refillWire()
        var types: [FrameType] = []
        var bytes = link.wire.readable
        while let size = FrameParser.pendingFrameSize(in: bytes), size <= bytes.count {
            types.append(FrameType(rawValue: bytes[4])!)
            bytes = UnsafeRawBufferPointer(rebasing: bytes[size...])
        }
        return types
    }

    /// A CREDIT queued for a dead connection returned bytes the flow got back with the new window: sent on the
    /// new connection it raised the peer's window past its grant (simulator seeds 1 and 5).
    @Test func aCreditQueuedForTheOldConnectionIsNotSentOnTheNew() {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
        link.restartFlows(window: 64 << 10)
        CreditFrame(group: 1, trafficClass: .replication, bytes: 4096, acked: 7).append(to: link.control.buffer)
        link.enqueueControl(FrameParser.encode(.removeSite, body: RemoveSiteFrame(siteID: 9).body))
        link.enqueueControl(FrameParser.encode(.heartbeat, body: []))
        link.restartFlows(window: 64 << 10)
        #expect(types(link) == [.removeSite])
    }

    /// A PEER_RECEIVER queued for a dead connection went after the new connection's link-up frames and said the
    /// group's receiver was gone when it was back (simulator seed 237).
    @Test func aReceiverChangeQueuedForTheOldConnectionIsNotSentOnTheNew() {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
        link.restartFlows(window: 64 << 10)
        link.enqueueControl(FrameParser.encode(.peerReceiver, body: PeerReceiverFrame(group: 1, present: false).body))
        link.refillWire()  // on the wire of the connection that dies
        link.restartFlows(window: 64 << 10)
        #expect(types(link).isEmpty)
    }

    @Test func controlFramesThatStillMeanSomethingOutliveTheConnection() {
        #expect(PeerLink.outlivesConnection(.removeSite) && PeerLink.outlivesConnection(.members))
        #expect(PeerLink.outlivesConnection(.peerAck) && PeerLink.outlivesConnection(.peerMaster))
        #expect(!PeerLink.outlivesConnection(.credit) && !PeerLink.outlivesConnection(.heartbeat))
        #expect(!PeerLink.outlivesConnection(.peerReceiver) && !PeerLink.outlivesConnection(.message))
        #expect(!PeerLink.outlivesConnection(nil))
    }
}
