// What the simulated clients sent, what came back, and what arrived where: the record the invariants are
// checked against. Safety is checked as events happen (a delivery out of order, a result nobody asked for, a
// PERMANENT result without the acks); what must have arrived is checked once every fault has healed.
import BrokerCore
import BrokerWire

final class SimLedger {
    struct Sent {
        let site: Int32
        let group: String
        let destination: Int32
        let at: SimTime
        let permanent: Bool
        let lsn: LSN
        /// Acks the PERMANENT send needs (its policy over the group's size when sent).
        let required: Int
        let policy: AckPolicy
        /// The producer's connection it was sent on (a result is owed while that connection lives).
        let connection: Int
        /// The sites its broker knew when it was sent (a broadcast's destinations).
        let members: [Int32]
        var status: SendStatus?
    }

    struct Stream: Hashable {
        let key: UInt32
        let site: Int32
    }

    struct AckKey: Hashable {
        let group: String
        let about: Int32
        let by: Int32
    }

    /// Messages by producer key, in sequence order (sequence n at n - 1).
    private(set) var sent: [UInt32: [Sent]] = [:]
    /// Sequences delivered per producer and receiving site, in the order they came.
    private(set) var delivered: [Stream: [UInt64]] = [:]
    /// The highest LSN each site's receiver acknowledged about another site's log.
    private var acks: [AckKey: LSN] = [:]
    /// Results other than 0 and 3 (the message was not queued everywhere) per broker life: site and crashes.
    private(set) var notQueuedResults: [Int64: Int] = [:]
    private(set) var messagesSent = 0
    private(set) var messagesDelivered = 0
    private(set) var results = 0

    func sent(key: UInt32, sequence: UInt64, from site: Int32, group: String, to destination: Int32, permanent: Bool,
              lsn: LSN, policy: AckPolicy, at time: SimTime, groupSize: Int, connection: Int, members: [Int32]) {
        messagesSent += 1
        sent[key, default: []].append(Sent(site: site, group: group, destination: destination, at: time,
                                           permanent: permanent, lsn: lsn, required: policy.requiredAcks(sites: groupSize), policy: policy,
                                           connection: connection, members: members))
        precondition(sent[key]!.count == Int(sequence), "producer sequences are dense")
    }

    /// A SEND_RESULT came; `groupSize` is the group's size at its broker now (a site may have joined or been
    /// removed between the write and the broker's reading of it: the smaller count of acks is the one due).
    func result(key: UInt32, sequence: UInt64, status: SendStatus, life: Int64, groupSize: Int, world: Simulation) {
        results += 1
        guard sequence >= 1, let messages = sent[key], Int(sequence) <= messages.count else {
            return world.violation("SEND_RESULT for message \(sequence) of producer \(key), which it never sent")
        }
        let message = messages[Int(sequence) - 1]
        guard message.status == nil else {
            return world.violation("a second SEND_RESULT (\(status)) for message \(sequence) of producer \(key)")
        }
        sent[key]![Int(sequence) - 1].status = status
        switch status {
        case .ok:
            guard message.permanent, message.lsn != .zero else { return }
            let durable = acks.filter { $0.key.group == message.group && $0.key.about == message.site && $0.value >= message.lsn }
                .count
            let required = min(message.required, message.policy.requiredAcks(sites: groupSize))
            if durable < required {
                world.violation("PERMANENT message \(sequence) of producer \(key) (LSN \(message.lsn)) reported "
                    + "acknowledged by \(required) sites; only \(durable) acknowledged it")
            }
        case .ackTimeout:
            if !message.permanent { world.violation("ack timeout for a message that was not PERMANENT") }
        case .queueFull, .unroutable, .partlyQueued:
            notQueuedResults[life, default: 0] += 1
        }
    }

    /// A receiver took a message: it must be for its site, from the site that sent it, after every earlier one
    /// of its producer here and never twice.
    func delivered(key: UInt32, sequence: UInt64, at site: Int32, group: String, from source: Int32, world: Simulation) {
        messagesDelivered += 1
        guard sequence >= 1, let messages = sent[key], Int(sequence) <= messages.count else {
            return world.violation("site \(site) got message \(sequence) of producer \(key), which it never sent")
        }
        let message = messages[Int(sequence) - 1]
        if message.site != source {
            world.violation("message \(sequence) of producer \(key) came labelled from site \(source), sent at site \(message.site)")
        }
        if message.group != group {
            world.violation("message \(sequence) of producer \(key) of group \(message.group) reached group \(group)")
        }
        switch message.destination {
        case SiteID.broadcast where site == message.site:
            world.violation("broadcast message \(sequence) of producer \(key) came back to its own site \(site)")
        case SiteID.broadcast, SiteID.master:
            break
        default:
            if message.destination != site {
                world.violation("message \(sequence) of producer \(key) for site \(message.destination) reached site \(site)")
            }
        }
        let stream = Stream(key: key, site: site)
        if let last = delivered[stream]?.last, last >= sequence {
            world.violation(last == sequence
                ? "site \(site) got message \(sequence) of producer \(key) twice"
                : "site \(site) got message \(sequence) of producer \(key) after message \(last)")
        }
        delivered[stream, default: []].append(sequence)
    }

    func acked(lsn: LSN, about source: Int32, by site: Int32, group: String) {
        let key = AckKey(group: group, about: source, by: site)
        if lsn > acks[key] ?? .zero { acks[key] = lsn }
    }

    func wasDelivered(key: UInt32, sequence: UInt64, at site: Int32) -> Bool {
        guard let list = delivered[Stream(key: key, site: site)] else { return false }
        // Sorted ascending (checked on arrival): binary search.
        var low = 0
        var high = list.count
        while low < high {
            let middle = (low + high) / 2
            if list[middle] < sequence { low = middle + 1 } else { high = middle }
        }
        return low < list.count && list[low] == sequence
    }
}

extension SimLedger {
    /// The first message of producer `key` sent on its connection number `connection` that has no result.
    func unanswered(key: UInt32, connection: Int) -> UInt64? {
        guard let messages = sent[key] else { return nil }
        for (offset, message) in messages.enumerated().reversed() {
            if message.connection != connection { break }
            if message.status == nil {
                // The earliest unanswered on this connection.
                var first = offset
                while first > 0, messages[first - 1].connection == connection, messages[first - 1].status == nil { first -= 1 }
                return UInt64(first + 1)
            }
        }
        return nil
    }
}
