// A replication group on this broker: its index on peer links, the client holding the receiver role,
// the standbys in the order they asked, and a bounded queue of messages waiting for a receiver.
import BrokerWire

final class Group {
    let name: String
    /// This broker's index for the group, sent in GROUP_BIND and MESSAGE frames on peer links.
    let index: UInt32
    var receiver: LocalClient?
    var standbys: [LocalClient] = []
    /// MESSAGE frames, ready for a client, that arrived while no client held the receiver role.
    let pending = FrameQueue(capacity: 4096)
    var pendingMessages = 0
    var pendingPayloadBytes = 0
    var delivered = 0
    var dropped = 0

    init(name: String, index: UInt32) {
        self.name = name
        self.index = index
    }

    var bindFrame: [UInt8] { FrameParser.encode(.groupBind, body: GroupBindFrame(group: index, name: name).body) }

    /// The next standby still connected, removed from the standby list.
    func takeNextStandby() -> LocalClient? {
        while !standbys.isEmpty {
            let next = standbys.removeFirst()
            if !next.isClosed { return next }
        }
        return nil
    }
}
