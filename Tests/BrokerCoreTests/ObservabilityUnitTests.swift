// The figures operators read, computed in-process with time given: latency histograms (buckets, quantiles,
// the last minute), the time-queued sample a link follows, heartbeat probes and their echoes between two
// cores, JSON log lines, and the Prometheus text format.
@testable import BrokerCore
import BrokerWire
import Foundation
import Testing

@Suite struct LatencyHistogramTests {
    @Test func valuesLandInTheirBucketsAndTheLastMinuteForgetsOlderSlots() {
        var histogram = LatencyHistogram()
        let second: UInt64 = 1_000_000_000
        #expect(LatencyHistogram.boundsNanoseconds.first == 1_000 && LatencyHistogram.boundsNanoseconds.last == 10 * second)
        #expect(LatencyHistogram.bucket(of: 0) == 0 && LatencyHistogram.bucket(of: 1_000) == 0)
        #expect(LatencyHistogram.bucket(of: 1_001) == 1)
        #expect(LatencyHistogram.bucket(of: 20 * second) == LatencyHistogram.boundsNanoseconds.count)
        // 100 values of 100 us at t = 5 s, one of 3 ms.
        for _ in 0..<100 { histogram.record(100_000, now: 5 * second) }
        histogram.record(3_000_000, now: 5 * second)
        var minute = histogram.lastMinute(now: 6 * second)
        #expect(minute.count == 101)
        #expect(minute.maxSeconds == 0.003)
        let p50 = minute.p50Seconds ?? 0
        #expect(p50 > 0.00005 && p50 <= 0.0001, "within the 50 - 100 us bucket: \(p50)")
        #expect((minute.p99Seconds ?? 0) <= 0.0001)
        // 50 s later the slot of t = 5 s is still in the minute; 70 s later it is not; the totals stay.
        minute = histogram.lastMinute(now: 55 * second)
        #expect(minute.count == 101)
        histogram.record(1_000_000_000, now: 70 * second)
        minute = histogram.lastMinute(now: 70 * second)
        #expect(minute.count == 1 && minute.maxSeconds == 1)
        #expect(histogram.count == 102)
        #expect(histogram.sumNanoseconds == 100 * 100_000 + 3_000_000 + 1_000_000_000)
        #expect(histogram.lastMinute(now: 200 * second).count == 0)
        #expect(histogram.lastMinute(now: 200 * second).p50Seconds == nil)
    }

    @Test func quantilesNeverExceedTheLargestValueSeen() {
        var histogram = LatencyHistogram()
        for _ in 0..<10 { histogram.record(1_100_000, now: 0) }  // 1.1 ms, in the 1 - 2.5 ms bucket
        let minute = histogram.lastMinute(now: 0)
        #expect(minute.p99Seconds == 0.0011)
        #expect((minute.p50Seconds ?? 0) >= 0.001 && (minute.p50Seconds ?? 1) <= 0.0011)
    }
}

@Suite struct TimeQueuedTests {
    /// One frame followed from its enqueue to the write of its last byte; the next frame queued while it was
    /// followed is not, and the one queued after it is.
    @Test func aFrameIsTimedFromEnqueueToTheWriteThatFinishesIt() {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
        let group = Group(name: "g", index: 1, peerCount: 1)
        link.restartFlows(window: 512 << 10)
        let header = MessageHeader(group: group.index, source: 1, destination: 2, flags: [], lsn: .zero,
                                   controlLength: 0, recLength: 100, sequence: 0)
        let payload = [UInt8](repeating: 1, count: 100)
        payload.withUnsafeBytes { link.enqueue(header, payload: $0, in: link.flow(group, .replication), now: 1_000) }
        payload.withUnsafeBytes { link.enqueue(header, payload: $0, in: link.flow(group, .replication), now: 1_500) }
        link.refillWire()
        let size = link.wire.byteCount / 2
        link.wire.didWrite(size - 1)
        link.wroteWire(size - 1, now: 4_000)
        #expect(link.timeQueued.count == 0, "not all of it written")
        link.wire.didWrite(1)
        link.wroteWire(1, now: 9_000)
        #expect(link.timeQueued.count == 1)
        #expect(link.timeQueued.sumNanoseconds == 8_000)
        link.wire.didWrite(size)
        link.wroteWire(size, now: 10_000)
        #expect(link.timeQueued.count == 1, "the second frame was not followed")
        payload.withUnsafeBytes { link.enqueue(header, payload: $0, in: link.flow(group, .replication), now: 20_000) }
        link.refillWire()
        link.wroteWire(link.wire.byteCount, now: 25_000)
        #expect(link.timeQueued.count == 2)
        #expect(link.timeQueued.sumNanoseconds == 13_000)
    }

    /// A followed frame whose queues are cleared (the site left) does not hold the sample for ever.
    @Test func clearingTheQueuesLetsGoOfTheFollowedFrame() {
        let link = PeerLink(siteID: 2, address: nil, queueLimit: 1 << 20)
        let group = Group(name: "g", index: 1, peerCount: 1)
        link.restartFlows(window: 512 << 10)
        let header = MessageHeader(group: group.index, source: 1, destination: 2, flags: [], lsn: .zero,
                                   controlLength: 0, recLength: 10, sequence: 0)
        let payload = [UInt8](repeating: 1, count: 10)
        payload.withUnsafeBytes { link.enqueue(header, payload: $0, in: link.flow(group, .replication), now: 1) }
        link.clearQueues()
        payload.withUnsafeBytes { link.enqueue(header, payload: $0, in: link.flow(group, .replication), now: 100) }
        link.refillWire()
        link.wroteWire(link.wire.byteCount, now: 150)
        #expect(link.timeQueued.count == 1)
        #expect(link.timeQueued.sumNanoseconds == 50)
    }
}

@Suite struct HeartbeatProbeTests {
    @Test func aProbeRoundTripsAndAnEmptyOrUnknownHeartbeatIsNoProbe() throws {
        let probe = HeartbeatFrame(kind: .probe, timestamp: 0x0102_0304_0506_0708)
        #expect(probe.body == [1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1])
        #expect(try probe.body.withUnsafeBytes { try HeartbeatFrame(body: $0) } == probe)
        #expect(try [UInt8]().withUnsafeBytes { try HeartbeatFrame(body: $0) } == nil, "protocol 5's empty heartbeat")
        var later = HeartbeatFrame(kind: .echo, timestamp: 1).body
        later[0] = 9
        later += [1, 2, 3]
        #expect(try later.withUnsafeBytes { try HeartbeatFrame(body: $0) } == nil, "a later version's kind is ignored")
        #expect(throws: WireError.self) { try [UInt8](repeating: 0, count: 5).withUnsafeBytes { try HeartbeatFrame(body: $0) } }
    }

    /// Site 1's probe, echoed by site 2's core, is one round trip at site 1: the time between the probe's tick
    /// and the echo's arrival, as the caller's clock says.
    @Test func anEchoedProbeIsARoundTripAndAStrayEchoIsNot() throws {
        var config = CoreConfig(siteID: 1)
        config.peers = [(2, "127.0.0.1:7002")]
        let core = Core(config: config, now: 1_000_000_000, incarnation: 7, seed: 9,
                        logger: Logger(label: "test", level: .warning, sink: KeptLines()))
        core.takeActions { _ in }
        let session = core.openAcceptedPeer()
        let hello = FrameParser.encode(.hello, body: HelloFrame(siteID: 2, incarnation: 3).body)
        let space = session.readSpace()
        hello.withUnsafeBytes { space.copyMemory(from: $0) }
        core.received(session, bytes: hello.count)
        core.takeActions { _ in }
        let link = try #require(core.membership.links[2])
        #expect(link.connection != nil)
        core.now += 2_000_000_000
        core.runTimers()
        let sentAt = link.probeSentAt
        #expect(sentAt == core.now, "a probe every heartbeat interval")
        // A stray echo (another timestamp) is not a round trip.
        core.now += 300_000
        core.heartbeat(HeartbeatFrame(kind: .echo, timestamp: sentAt - 1), on: link)
        #expect(link.roundTrips.count == 0)
        core.heartbeat(HeartbeatFrame(kind: .echo, timestamp: sentAt), on: link)
        #expect(link.roundTrips.count == 1)
        #expect(link.roundTrips.sumNanoseconds == 300_000)
        core.heartbeat(HeartbeatFrame(kind: .echo, timestamp: sentAt), on: link)
        #expect(link.roundTrips.count == 1, "one echo per probe")
        // A peer's probe is echoed with its timestamp unchanged.
        let before = link.control.byteCount
        core.heartbeat(HeartbeatFrame(kind: .probe, timestamp: 42), on: link)
        let echo = HeartbeatFrame(kind: .echo, timestamp: 42)
        #expect(link.control.byteCount == before + Wire.frameHeaderSize + echo.body.count)
        #expect(Array(link.control.readable.suffix(16)) == echo.body)
        let stats = core.stats(pid: 0, acceptFailures: 0)
        #expect(stats.peers.first?.rtt?.count == 1)
        #expect(stats.peers.first?.rtt?.lastMinute.maxSeconds == 0.0003)
    }
}

@Suite struct JSONLogLineTests {
    @Test func aLineIsOneJSONObjectWithTheTextFormsFieldsAndNothingATerminalActsOn() throws {
        let name = "evil\n2026 error forged\u{1B}[2J\u{9B}\u{202E}\"\\ ü"
        let line = Logger.jsonLine(timestamp: "2026-12-05T00:00:00.000Z", .warning, label: "repbrokerd", "client \(name)",
                                   ["client.name": name, "message": "collides"])
        #expect(line.hasSuffix("}\n"))
        #expect(line.filter { $0 == "\n" } == "\n")
        #expect(!line.unicodeScalars.dropLast().contains { TerminalText.isControl($0) })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["time"] == "2026-12-05T00:00:00.000Z")
        #expect(object["level"] == "warning")
        #expect(object["label"] == "repbrokerd")
        #expect(object["message"] == "client \(name)")
        #expect(object["client.name"] == name)
        #expect(object["message_"] == "collides", "a key that would repeat a field gets an underscore")
        #expect(line.hasPrefix("{\"time\":\"2026-12-05T00:00:00.000Z\",\"level\":\"warning\",\"label\":\"repbrokerd\",\"message\":"))
    }
}

@Suite struct PrometheusTextTests {
    func stats() -> BrokerStats {
        var histogram = LatencyHistogram()
        histogram.record(2_000, now: 0)
        histogram.record(30_000_000, now: 0)
        let peer = PeerStats(siteID: 2, address: "127.0.0.1:1", origin: .configured, state: .connected, messagesSent: 5,
                             bytesSent: 50, messagesReceived: 1, bytesReceived: 10, queuedBytes: 0, dropped: 0, refused: 0,
                             reconnects: 1, resent: 0, duplicates: 0, millisecondsSinceHeard: 1500, flows: [], tls: "plain",
                             rtt: histogram.stats(now: 0), timeQueued: nil)
        let client = { (name: String, sent: Int) in
            ClientStats(id: 1, pid: 2, name: name, group: "g\"1", roles: ["sender"], transport: "shm", messagesSent: sent,
                        bytesSent: 0, messagesReceived: 0, bytesReceived: 0, queuedBytes: 0, dropped: 0, ackPolicy: "none",
                        permanentAcked: 0, permanentFailed: 0, paused: false)
        }
        let totals = TotalStats(messagesRouted: 7, messagesSentToPeers: 5, messagesReceivedFromPeers: 1, messagesDelivered: 1,
                                dropped: 0, refused: 0, unroutable: 0, misrouted: 0, badFrames: 0, clientsConnected: 3,
                                clientsRefused: 0, acceptFailures: 0, groupsRefused: 0, groupsReleased: 0, peersConnected: 1,
                                acksReceived: 0, permanentAcked: 0, permanentAckFailures: 0, channelMessages: 0,
                                channelRequests: 0, channelReplies: 0, channelNoSubscriber: 0, channelTimeouts: 0, tlsFailures: 0)
        return BrokerStats(siteID: 1, pid: 3, uptimeMilliseconds: 2500, peers: [peer],
                           clients: [client("w\\1\n", 4), client("w\\1\n", 6), client("other", 1)], groups: [], totals: totals)
    }

    @Test func histogramsAreCumulativeAndClientsWithOneNameAreSummedWithEscapedLabels() {
        let text = stats().prometheusText
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains("repbroker_uptime_seconds 2.5"))
        #expect(lines.contains("repbroker_peer_up{peer=\"2\"} 1"))
        #expect(lines.contains("repbroker_peer_last_heard_seconds{peer=\"2\"} 1.5"))
        #expect(lines.contains("repbroker_peer_rtt_seconds_bucket{peer=\"2\",le=\"1e-06\"} 0"))
        #expect(lines.contains("repbroker_peer_rtt_seconds_bucket{peer=\"2\",le=\"2.5e-06\"} 1"))
        #expect(lines.contains("repbroker_peer_rtt_seconds_bucket{peer=\"2\",le=\"0.025\"} 1"))
        #expect(lines.contains("repbroker_peer_rtt_seconds_bucket{peer=\"2\",le=\"0.05\"} 2"))
        #expect(lines.contains("repbroker_peer_rtt_seconds_bucket{peer=\"2\",le=\"+Inf\"} 2"))
        #expect(lines.contains("repbroker_peer_rtt_seconds_count{peer=\"2\"} 2"))
        #expect(lines.contains("repbroker_peer_rtt_seconds_sum{peer=\"2\"} 0.030002"))
        #expect(lines.contains("repbroker_clients{group=\"g\\\"1\",client=\"w\\\\1\\n\",transport=\"shm\"} 2"))
        #expect(lines.contains("repbroker_client_sent_messages_total{group=\"g\\\"1\",client=\"w\\\\1\\n\",transport=\"shm\"} 10"))
        #expect(lines.contains("repbroker_client_sent_messages_total{group=\"g\\\"1\",client=\"other\",transport=\"shm\"} 1"))
        #expect(!lines.contains { $0.hasPrefix("repbroker_peer_time_queued_seconds") }, "no histogram, no family")
        // Every family has HELP and TYPE before its samples, every counter ends in _total.
        var typed: [String: String] = [:]
        for line in lines {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                typed[String(parts[2])] = String(parts[3])
                if parts[3] == "counter" { #expect(parts[2].hasSuffix("_total")) }
            } else if !line.hasPrefix("#") {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                let family = ["_bucket", "_sum", "_count"].reduce(name) { name, suffix in
                    typed[name] == nil && name.hasSuffix(suffix) ? String(name.dropLast(suffix.count)) : name
                }
                #expect(typed[family] != nil, "\(name) has a TYPE before it")
            }
        }
    }
}

@Suite struct PeerVersionTests {
    /// A core of site 1 linked with site 2 by an accepted connection whose HELLO speaks `versions`.
    func linked(_ versions: ClosedRange<UInt16>) throws -> (Core, PeerLink, KeptLines) {
        var config = CoreConfig(siteID: 1)
        config.peers = [(2, "127.0.0.1:7002")]
        let lines = KeptLines()
        let core = Core(config: config, now: 1_000_000_000, incarnation: 7, seed: 9,
                        logger: Logger(label: "test", level: .info, sink: lines))
        core.takeActions { _ in }
        let session = core.openAcceptedPeer()
        let hello = FrameParser.encode(.hello, body: HelloFrame(versions: versions, siteID: 2, incarnation: 3).body)
        let space = session.readSpace()
        hello.withUnsafeBytes { space.copyMemory(from: $0) }
        core.received(session, bytes: hello.count)
        core.takeActions { _ in }
        return (core, try #require(core.membership.links[2]), lines)
    }

    @Test func aLinkToAProtocol5PeerSpeaks5SendsEmptyHeartbeatsAndSaysSo() throws {
        let (core, link, lines) = try linked(5...5)
        #expect(link.connection != nil && link.protocolVersion == 5)
        #expect(lines.lines.contains { $0.contains("peer speaks protocol 5") && $0.contains("without heartbeat round trips") })
        let before = link.control.byteCount
        core.now += 2_000_000_000
        core.runTimers()
        #expect(link.control.byteCount == before + Wire.frameHeaderSize, "an empty HEARTBEAT, as protocol 5 sends")
        #expect(link.probeSentAt == 0)
        let peer = try #require(core.stats(pid: 0, acceptFailures: 0).peers.first)
        #expect(peer.protocolVersion == 5 && peer.rtt == nil)
    }

    @Test func aLinkToAPeerOfThisOrALaterVersionSpeaks6() throws {
        for versions: ClosedRange<UInt16> in [5...6, 6...7] {
            let (core, link, lines) = try linked(versions)
            #expect(link.protocolVersion == 6, "\(versions)")
            #expect(!lines.lines.contains { $0.contains("peer speaks protocol") })
            #expect(core.stats(pid: 0, acceptFailures: 0).peers.first?.protocolVersion == 6)
        }
    }
}
