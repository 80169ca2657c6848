// A simulated Berkeley DB process: a producer (the master's log writers: messages to one site, to all, or to
// the master, some PERMANENT with an LSN and an ack policy) or a receiver (the thread that feeds
// rep_process_message: it takes messages and site events, and acknowledges PERMANENT ones). It speaks the
// client protocol over an in-memory socket, and with rings writes and reads ring records in memory the
// broker's core reads and writes too, so the ring code is the real one. It reconnects after its broker
// restarts; a killed client is gone for good (the workload starts another).
import BrokerCore
import BrokerWire

final class SimClient {
    enum Role: String { case producer, receiver }

    let index: Int
    let site: Int32
    let group: String
    let role: Role
    /// Names the producer in every message it sends (a killed producer's successor has another).
    let key: UInt32
    let wantsRings: Bool
    unowned let world: Simulation
    private(set) var alive = true
    private(set) var connection: SimConnection?
    private var reconnectAt: SimTime
    private(set) var registered = false
    private(set) var roleState = RoleState.none
    private var input = ByteBuffer(capacity: 4096)
    /// Bytes for the socket not taken yet (a full socket): written first.
    private var outbox: [UInt8] = []
    private var rings: (writer: RingWriter, reader: RingReader, assembler: FrameAssembler)?
    /// A frame partly written to the ring as fragments.
    private var fragmentFrame: [UInt8] = []
    private var fragmentOffset = 0
    private let maxMessage: Int
    /// Which broker life this connection is to (site and crashes): results are counted against it.
    private var life: Int64 = 0
    /// Connections made so far (messages sent on one are owed a result while it lives).
    private(set) var connections = 0

    // Producer.
    var producing = true
    /// Messages a test asked for (destination and size), sent before any the workload picks.
    var script: [(destination: Int32, size: Int)] = []
    private(set) var nextSequence: UInt64 = 1
    var ackPolicy = AckPolicy.none
    var permanent = false
    // Receiver.
    /// Reads at most this many bytes a turn until `slowUntil` (a slow receiver).
    var slowUntil: SimTime = 0
    var slowBytesPerTurn = 512
    /// What this receiver was told of each site (SITE_EVENT), and when.
    private(set) var siteUp: [Int32: (up: Bool, at: SimTime)] = [:]

    init(index: Int, site: Int32, group: String, role: Role, key: UInt32, rings: Bool, startAt: SimTime,
         maxMessage: Int, world: Simulation) {
        self.index = index
        self.site = site
        self.group = group
        self.role = role
        self.key = key
        wantsRings = rings
        reconnectAt = startAt
        self.maxMessage = maxMessage
        self.world = world
    }

    var description: String { "client \(index) (\(role.rawValue) key \(key) at site \(site) in \(group))" }

    /// Holds the receiver role on a connection its broker has not closed.
    var holdsReceiverRole: Bool {
        guard alive, let connection, roleState == .receiver else { return false }
        return !connection.bToA.finished && !connection.bToA.wasReset
    }

    /// Has read everything its broker sent (so what it was told is all it can know).
    var isCaughtUp: Bool {
        guard let connection, connection.bToA.isIdle, input.readableBytes == 0 else { return false }
        return !(rings?.reader.hasRecords ?? false)
    }

    // MARK: life

    /// A killed process: its socket closes (what it wrote is still read), it never comes back.
    func kill() {
        guard alive else { return }
        alive = false
        disconnect(reconnect: false)
    }

    private func disconnect(reconnect: Bool) {
        if let connection {
            connection.aToB.finish(now: world.now, delay: 0)
            world.disconnected(self, connection)
        }
        connection = nil
        registered = false
        roleState = .none
        rings = nil
        fragmentFrame = []
        fragmentOffset = 0
        outbox.removeAll()
        input.clear()
        siteUp.removeAll()
        if reconnect { reconnectAt = world.now + world.random.time(.ms(50)...(.ms(400))) }
    }

    func attachRings(base: UnsafeMutableRawPointer, ringBytes: Int, connection: SimConnection) {
        guard connection === self.connection else { return }
        let rings = RingLayout.rings(base, ringBytes: ringBytes)
        self.rings = (RingWriter(rings.toBroker), RingReader(rings.toClient), FrameAssembler())
    }

    // MARK: the turn

    func turn() {
        guard alive else { return }
        guard let connection else {
            if world.now >= reconnectAt, let broker = world.broker(site), broker.alive {
                connect(to: broker)
            }
            return
        }
        if connection.bToA.wasReset { return disconnect(reconnect: true) }
        flushOutbox()
        readSocket()
        guard self.connection != nil else { return }
        readRing()
        guard role == .producer, registered, outbox.isEmpty else { return }
        // A frame begun in parts is finished, even once the writer stops writing new ones.
        if !fragmentFrame.isEmpty, !continueFragments() { return }
        while !script.isEmpty {
            guard sendOne() == true else { return }
        }
        if producing { produce() }
    }

    private func connect(to broker: SimBroker) {
        let connection = SimConnection(a: .client(index), b: .broker(site), capacity: world.localSocketBytes, delay: 0)
        self.connection = connection
        world.registerConnection(connection)
        connections += 1
        life = Int64(site) << 32 | Int64(broker.crashes)
        var register = RegisterFrame(roles: role == .receiver ? [.receiver] : [], pid: Int32(1000 + index),
                                     group: group, name: "\(role.rawValue)-\(key)")
        register.ringBytes = wantsRings ? UInt32(world.ringBytes) : 0
        outbox += FrameParser.encode(.register, body: register.body)
        if role == .producer && ackPolicy != .none {
            outbox += FrameParser.encode(.ackPolicy, body: AckPolicyFrame(policy: ackPolicy, timeoutMilliseconds: 400).body)
        }
        if role == .producer && permanent {
            outbox += FrameParser.encode(.master, body: MasterFrame(siteID: site).localBody)
        }
        flushOutbox()
        broker.acceptClient(connection, pid: Int32(1000 + index))
    }

    private func flushOutbox() {
        guard let connection, !outbox.isEmpty else { return }
        let written = outbox.withUnsafeBytes { connection.aToB.write($0, now: world.now, delay: 0) }
        outbox.removeFirst(written)
    }

    private func readSocket() {
        guard let connection else { return }
        let stream = connection.bToA
        let slow = role == .receiver && world.now < slowUntil
        var budget = slow ? slowBytesPerTurn : Int.max
        while stream.unread > 0, budget > 0 {
            input.reserve(64 << 10)
            let count = stream.read(into: input.writable, limit: budget)
            input.commit(count)
            budget -= count
            guard parseInput() else { return }
        }
        if stream.atEnd(now: world.now) { disconnect(reconnect: true) }
    }

    /// Handles every whole frame read; false when the connection ended.
    private func parseInput() -> Bool {
        do {
            while let frame = try FrameParser.next(in: input.readable, maxMessage: maxMessage) {
                handle(frame)
                guard connection != nil else { return false }
                input.consume(frame.totalSize)
            }
        } catch {
            world.violation("\(description) got a bad frame from its broker: \(error)")
            return false
        }
        return true
    }

    private func readRing() {
        // The rings come with WELCOME: not used before it is read.
        guard registered, let rings else { return }
        let slow = role == .receiver && world.now < slowUntil
        var records = slow ? 2 : 256
        do {
            while records > 0, let record = try rings.reader.next() {
                records -= 1
                if let whole = try rings.assembler.add(kind: record.kind, payload: record.payload, maxFrame: maxMessage + 64) {
                    guard let frame = try FrameParser.next(in: whole, maxMessage: maxMessage) else {
                        world.violation("\(description): a ring record holds no whole frame")
                        return
                    }
                    handle(frame)
                }
                rings.reader.release()
                guard connection != nil else { return }
            }
        } catch {
            world.violation("\(description): corrupt to-client ring: \(error)")
        }
    }

    private func handle(_ frame: Frame) {
        do {
            switch frame.type {
            case .welcome:
                let welcome = try WelcomeFrame(body: frame.body)
                registered = true
                roleState = welcome.roleState
                world.roleChanged(self)
            case .role:
                roleState = try RoleFrame(body: frame.body).roleState
                world.roleChanged(self)
            case .sendResult:
                let result = try SendResultFrame(body: frame.body)
                world.ledger.result(key: key, sequence: result.sequence, status: result.status, life: life,
                                    groupSize: world.broker(site)?.core.groupSize ?? 1, world: world)
            case .message:
                let header = try MessageHeader(body: frame.body)
                let payload = UnsafeRawBufferPointer(rebasing: frame.body[Wire.messageHeaderSize...])
                received(header, payload)
            case .siteEvent:
                let event = try SiteEventFrame(body: frame.body)
                siteUp[event.siteID] = (event.up, world.now)
            case .error:
                let error = try ErrorFrame(body: frame.body)
                world.note("\(description) got ERROR \(error)")
            default:
                world.violation("\(description) got an unexpected \(frame.type) frame")
            }
        } catch {
            world.violation("\(description) got a malformed \(frame.type) frame: \(error)")
        }
    }

    private func received(_ header: MessageHeader, _ payload: UnsafeRawBufferPointer) {
        // A standby's promotion (ROLE, on the socket) may come after the first messages in its ring.
        guard role == .receiver, roleState == .receiver || (roleState == .standby && rings != nil) else {
            return world.violation("\(description) holds no receiver role (\(roleState)) and got a message")
        }
        guard payload.count >= 12 else { return world.violation("\(description) got a message of \(payload.count) bytes") }
        let key = payload.loadUnaligned(as: UInt32.self)
        let sequence = payload.loadUnaligned(fromByteOffset: 4, as: UInt64.self)
        world.ledger.delivered(key: key, sequence: sequence, at: site, group: group, from: header.source, world: world)
        if header.flags.contains(.permanent), header.lsn != .zero {
            outbox += FrameParser.encode(.ack, body: AckFrame(lsn: header.lsn, siteID: header.source).body)
            world.ledger.acked(lsn: header.lsn, about: header.source, by: site, group: group)
            flushOutbox()
        }
    }

    // MARK: producing

    /// A few messages on some turns: enough to fill small queues and close small windows, few enough that a
    /// run takes a fraction of a second.
    private func produce() {
        guard world.random.chance(0.3) else { return }
        for _ in 0..<world.random.int(1...4) {
            guard let sent = sendOne() else { return }
            if !sent { return }
        }
    }

    /// Writes the next message; false when the socket or ring is full (it is tried again next turn).
    private func sendOne() -> Bool? {
        guard let connection else { return nil }
        if rings != nil, !fragmentFrame.isEmpty { return continueFragments() }
        let scripted = script.first
        let destination = scripted?.destination ?? world.workload.destination(for: self)
        let size = scripted?.size ?? world.workload.messageSize()
        let sequence = nextSequence
        var header = MessageHeader(group: 0, source: 0, destination: destination, flags: permanent ? [.permanent] : [],
                                   lsn: permanent ? LSN(file: 1, offset: UInt32(truncatingIfNeeded: sequence)) : .zero,
                                   controlLength: 0, recLength: UInt32(size), sequence: sequence)
        header.group = 0
        var frame = [UInt8](repeating: 0, count: header.frameSize)
        var rec = [UInt8](repeating: UInt8(truncatingIfNeeded: sequence), count: size)
        withUnsafeBytes(of: key.littleEndian) { rec.replaceSubrange(0..<4, with: $0) }
        withUnsafeBytes(of: sequence.littleEndian) { rec.replaceSubrange(4..<12, with: $0) }
        frame.withUnsafeMutableBytes { out in
            rec.withUnsafeBytes { header.writeFrame(at: out.baseAddress!, payload: $0) }
        }
        if let rings {
            if frame.count > rings.writer.maxPayload {
                fragmentFrame = frame
                fragmentOffset = 0
                record(sequence, destination, header)
                return continueFragments()
            }
            let written = (try? rings.writer.write(kind: .frame, payload: frame.count) { out in
                frame.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
            }) ?? false
            guard written else { return false }
            rings.writer.publish()
        } else {
            guard connection.aToB.room > 0 else { return false }
            outbox += frame
            flushOutbox()
        }
        record(sequence, destination, header)
        return true
    }

    private func record(_ sequence: UInt64, _ destination: Int32, _ header: MessageHeader) {
        nextSequence += 1
        if !script.isEmpty { script.removeFirst() }
        world.ledger.sent(key: key, sequence: sequence, from: site, group: group, to: destination,
                          permanent: permanent, lsn: header.lsn, policy: ackPolicy, at: world.now,
                          groupSize: world.broker(site)?.core.groupSize ?? 1, connection: connections,
                          members: destination == SiteID.broadcast ? world.broker(site)?.core.memberSites ?? [] : [])
    }

    private func continueFragments() -> Bool {
        guard let rings else { return false }
        let offset = (try? fragmentFrame.withUnsafeBytes { try rings.writer.writeFragments(of: $0, from: fragmentOffset) })
            ?? fragmentOffset
        if offset > fragmentOffset { rings.writer.publish() }
        fragmentOffset = offset
        guard offset == fragmentFrame.count else { return false }
        fragmentFrame = []
        fragmentOffset = 0
        return true
    }
}
