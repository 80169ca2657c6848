// Routing and acks, in process on virtual time: where a message goes, what its SEND_RESULT says, and when a
// PERMANENT send is acknowledged.
@testable import BrokerSim
import BrokerCore
import BrokerWire
import Testing

@Suite struct RoutingTests {
    @Test func aMessageForOneSiteReachesThatSiteAlone() {
        let group = Scenario()
        for site: Int32 in 1...3 { group.receiver(at: site) }
        let writer = group.producer(at: 1)
        #expect(group.wait { group.linked([1, 2, 3]) })
        writer.script = [(2, 100)]
        #expect(group.wait { group.delivered(writer, 1, at: 2) })
        group.pass(200)
        #expect(!group.delivered(writer, 1, at: 3) && !group.delivered(writer, 1, at: 1))
        #expect(group.status(writer, 1) == .ok)
        #expect(group.violation == nil, "\(group.violation ?? "")")
    }

    @Test func aBroadcastReachesEveryOtherSiteAndNotItsOwn() {
        let group = Scenario(brokers: 4)
        for site: Int32 in 1...4 { group.receiver(at: site) }
        let writer = group.producer(at: 2)
        #expect(group.wait { group.linked([1, 2, 3, 4]) })
        writer.script = [(SiteID.broadcast, 40), (SiteID.broadcast, 60_000)]
        #expect(group.wait { [1, 3, 4].allSatisfy { group.delivered(writer, 2, at: $0) } })
        #expect([1, 3, 4].allSatisfy { group.delivered(writer, 1, at: $0) })
        group.pass(100)
        #expect(!group.delivered(writer, 1, at: 2))
        #expect(group.violation == nil, "\(group.violation ?? "")")
    }

    @Test func aMessageForASiteNoOneKnowsIsUnroutableAndCounted() {
        let group = Scenario()
        let writer = group.producer(at: 1)
        writer.script = [(99, 20)]
        #expect(group.wait { group.status(writer, 1) != nil })
        #expect(group.status(writer, 1) == .unroutable)
        #expect(group.core(1).countedDrops == 1)
    }

    @Test func aMessageForTheMasterGoesToTheSiteLastAnnounced() {
        let group = Scenario()
        for site: Int32 in 1...3 { group.receiver(at: site) }
        let master = group.producer(at: 3)
        master.permanent = true  // announces site 3 as master when it registers
        let writer = group.producer(at: 1)
        #expect(group.wait { group.linked([1, 2, 3]) && master.registered })
        // Before the announcement reaches site 1 the master is unknown there: wait until it is routed.
        #expect(group.wait {
            if group.status(writer, UInt64(writer.nextSequence - 1)) == .unroutable || writer.nextSequence == 1 {
                writer.script = [(SiteID.master, 30)]
            }
            return group.delivered(writer, writer.nextSequence - 1, at: 3)
        })
        #expect(group.violation == nil, "\(group.violation ?? "")")
    }
}

@Suite struct AckTests {
    /// Three linked sites with a receiver each, and a producer at site 1 that sends PERMANENT under policy all.
    static func linkedGroupWithMaster() -> (Scenario, SimClient) {
        let group = Scenario()
        for site: Int32 in 1...3 { group.receiver(at: site) }
        let master = group.producer(at: 1)
        master.permanent = true
        master.ackPolicy = .all
        #expect(group.wait { group.linked([1, 2, 3]) && master.registered })
        return (group, master)
    }

    /// Policy all: the result comes once every other site's receiver acknowledged the LSN.
    @Test func aPermanentSendIsAcknowledgedOnceItsPolicyIsMet() {
        let (group, master) = Self.linkedGroupWithMaster()
        master.script = [(SiteID.broadcast, 64)]
        #expect(group.wait { group.status(master, 1) != nil })
        #expect(group.status(master, 1) == .ok)
        #expect(group.delivered(master, 1, at: 2) && group.delivered(master, 1, at: 3))
        #expect(group.violation == nil, "\(group.violation ?? "")")
    }

    /// A site cut off cannot acknowledge: the send times out (status 3) after the policy's 400 ms.
    @Test func aPermanentSendTimesOutWhenASiteCannotAcknowledge() {
        let (group, master) = Self.linkedGroupWithMaster()
        group.partition(1, 3, milliseconds: 2000)
        master.script = [(SiteID.broadcast, 64)]
        let sentAt = group.sim.now
        #expect(group.wait { group.status(master, 1) != nil })
        #expect(group.status(master, 1) == .ackTimeout)
        #expect(group.sim.now - sentAt >= .ms(400))
        #expect(group.violation == nil, "\(group.violation ?? "")")
    }
}
