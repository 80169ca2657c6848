// The Swift constants mirror ipc/include/repbroker_frames.h exactly.
import BrokerWire
import CRepBrokerIPC
import Testing

@Suite struct ContractTests {
    @Test func constantsMatchTheCHeader() {
        #expect(UInt32(Wire.protocolVersion) == RB_PROTOCOL_VERSION)
        #expect(UInt32(Wire.frameMagic) == RB_FRAME_MAGIC)
        #expect(Wire.peerHelloMagic == RB_PEER_HELLO_MAGIC)
        #expect(UInt32(Wire.maxControlBody) == RB_MAX_CONTROL_BODY)
        #expect(UInt32(Wire.defaultMaxMessage) == RB_DEFAULT_MAX_MESSAGE)
        #expect(UInt32(Wire.maxGroupName) == RB_MAX_GROUP_NAME)
        #expect(UInt32(Wire.maxClientName) == RB_MAX_CLIENT_NAME)
        #expect(UInt32(Wire.maxMembers) == RB_MAX_MEMBERS)
        #expect(Wire.defaultFlowWindow == RB_DEFAULT_FLOW_WINDOW && Wire.minFlowWindow == RB_MIN_FLOW_WINDOW)
        #expect(UInt32(TrafficClass.replication.rawValue) == RB_CLASS_REPLICATION)
        #expect(UInt32(TrafficClass.channel.rawValue) == RB_CLASS_CHANNEL)
        #expect(MemoryLayout<rb_credit>.size == CreditFrame.bodySize)
        #expect(MemoryLayout<rb_peer_receiver>.size == PeerReceiverFrame.bodySize)
        #expect(SiteID.broadcast == RB_EID_BROADCAST)
        #expect(SiteID.invalid == RB_EID_INVALID)
        #expect(SiteID.master == RB_EID_MASTER)
        #expect(UInt32(ChannelKind.reply.rawValue) == RB_CHANNEL_REPLY)
        #expect(ChannelStatus.noSubscriber.rawValue == RB_CHANNEL_NO_SUBSCRIBER && ChannelStatus.queueFull.rawValue == RB_CHANNEL_QUEUE_FULL)
        #expect(ChannelStatus.timedOut.rawValue == RB_CHANNEL_TIMED_OUT)
        #expect(MemoryLayout<rb_channel>.size == ChannelFrame.headerSize)
        #expect(MemoryLayout<rb_channel_result>.size == ChannelResultFrame(requestID: 1, requester: 1, status: .delivered).body.count)
    }

    @Test func frameTypesMatchTheCHeader() {
        let pairs: [(FrameType, UInt32)] = [
            (.register, RB_FRAME_REGISTER), (.welcome, RB_FRAME_WELCOME), (.role, RB_FRAME_ROLE),
            (.sendResult, RB_FRAME_SEND_RESULT), (.error, RB_FRAME_ERROR), (.message, RB_FRAME_MESSAGE),
            (.hello, RB_FRAME_HELLO), (.activate, RB_FRAME_ACTIVATE), (.heartbeat, RB_FRAME_HEARTBEAT),
            (.groupBind, RB_FRAME_GROUP_BIND), (.siteEvent, RB_FRAME_SITE_EVENT), (.ack, RB_FRAME_ACK),
            (.ackPolicy, RB_FRAME_ACK_POLICY), (.master, RB_FRAME_MASTER), (.peerAck, RB_FRAME_PEER_ACK),
            (.peerMaster, RB_FRAME_PEER_MASTER), (.subscribe, RB_FRAME_SUBSCRIBE), (.channel, RB_FRAME_CHANNEL),
            (.channelResult, RB_FRAME_CHANNEL_RESULT), (.members, RB_FRAME_MEMBERS), (.removeSite, RB_FRAME_REMOVE_SITE),
            (.auth, RB_FRAME_AUTH), (.credit, RB_FRAME_CREDIT), (.peerReceiver, RB_FRAME_PEER_RECEIVER),
        ]
        for (type, value) in pairs { #expect(UInt32(type.rawValue) == value, "\(type)") }
    }

    @Test func flagsRolesAndCodesMatchTheCHeader() {
        #expect(RepFlags.anywhere.rawValue == RB_REP_ANYWHERE)
        #expect(RepFlags.noBuffer.rawValue == RB_REP_NOBUFFER)
        #expect(RepFlags.permanent.rawValue == RB_REP_PERMANENT)
        #expect(RepFlags.rerequest.rawValue == RB_REP_REREQUEST)
        #expect(UInt32(ClientRoles.sender.rawValue) == RB_ROLE_SENDER)
        #expect(UInt32(ClientRoles.receiver.rawValue) == RB_ROLE_RECEIVER)
        #expect(UInt32(RoleState.receiver.rawValue) == RB_ROLE_STATE_RECEIVER)
        #expect(UInt32(RoleState.standby.rawValue) == RB_ROLE_STATE_STANDBY)
        #expect(SendStatus.queueFull.rawValue == RB_SEND_QUEUE_FULL)
        #expect(SendStatus.unroutable.rawValue == RB_SEND_UNROUTABLE)
        #expect(SendStatus.ackTimeout.rawValue == RB_SEND_ACK_TIMEOUT)
        #expect(SendStatus.partlyQueued.rawValue == RB_SEND_PARTLY_QUEUED)
        #expect(UInt32(AckPolicy.none.rawValue) == RB_ACK_NONE && UInt32(AckPolicy.one.rawValue) == RB_ACK_ONE)
        #expect(UInt32(AckPolicy.quorum.rawValue) == RB_ACK_QUORUM && UInt32(AckPolicy.all.rawValue) == RB_ACK_ALL)
        #expect(ErrorCode.duplicateLink.rawValue == RB_ERR_DUPLICATE_LINK)
        #expect(ErrorCode.shutdown.rawValue == RB_ERR_SHUTDOWN)
        #expect(ErrorCode.auth.rawValue == RB_ERR_AUTH)
        #expect(ErrorCode.notAllowed.rawValue == RB_ERR_NOT_ALLOWED)
        #expect(ErrorCode.clientLimit.rawValue == RB_ERR_CLIENT_LIMIT)
        #expect(ErrorCode.groupLimit.rawValue == RB_ERR_GROUP_LIMIT)
        #expect(ErrorCode.tls.rawValue == RB_ERR_TLS)
    }

    @Test func layoutSizesMatchTheCHeader() {
        #expect(MemoryLayout<rb_frame_header>.size == Wire.frameHeaderSize)
        #expect(MemoryLayout<rb_message>.size == Wire.messageHeaderSize)
        #expect(MemoryLayout<rb_hello>.size == HelloFrame(siteID: 1, incarnation: 1).body.count)
        #expect(MemoryLayout<rb_members>.size == MembersFrame(members: []).body.count)
        #expect(MemoryLayout<rb_remove_site>.size == RemoveSiteFrame(siteID: 1).body.count)
        #expect(MemoryLayout<rb_welcome>.size == WelcomeFrame(roleState: .none, siteID: 1, clientID: 1, maxMessage: 1).body.count)
        #expect(MemoryLayout<rb_send_result>.size == SendResultFrame(sequence: 1, status: .ok).body.count)
        #expect(MemoryLayout<rb_role>.size == RoleFrame(roleState: .receiver).body.count)
        #expect(MemoryLayout<rb_register>.size == RegisterFrame(roles: .sender, pid: 1, group: "", name: "").body.count)
        #expect(MemoryLayout<rb_group_bind>.size == GroupBindFrame(group: 1, name: "").body.count)
        #expect(MemoryLayout<rb_site_event>.size == SiteEventFrame(siteID: 1, up: true).body.count)
        #expect(MemoryLayout<rb_ack>.size == AckFrame(lsn: .zero, siteID: 1).body.count)
        #expect(MemoryLayout<rb_ack_policy>.size == AckPolicyFrame(policy: .all, timeoutMilliseconds: 1).body.count)
        #expect(MemoryLayout<rb_master>.size == MasterFrame(siteID: 1).localBody.count)
        #expect(MemoryLayout<rb_peer_ack>.size == PeerAckFrame(group: 1, lsn: .zero).body.count)
        #expect(MemoryLayout<rb_peer_master>.size == MasterFrame(group: 1, siteID: 1).peerBody.count)
    }

    @Test func ringConstantsMatchTheCHeader() {
        #expect(UInt32(RingLayout.version) == RB_SHM_VERSION)
        #expect(RingLayout.magic == RB_SHM_MAGIC)
        #expect(RecordKind.frame.rawValue == RB_RECORD_FRAME)
        #expect(RecordKind.wrap.rawValue == RB_RECORD_WRAP)
        #expect(RecordKind.fragment.rawValue == RB_RECORD_FRAGMENT)
        #expect(RecordKind(rawValue: 3) == nil, "MARK (version 1) is refused")
        #expect(RingLayout.recordHeaderBytes == MemoryLayout<rb_record_header>.size)
        #expect(RingLayout.headerBytes == MemoryLayout<rb_shm_header>.size)
    }

    @Test(arguments: [(2, 1, 1, 1), (3, 1, 1, 2), (4, 1, 2, 3), (5, 1, 2, 4), (1, 0, 0, 0)])
    func ackPoliciesCountSitesBesidesTheSender(sites: Int, one: Int, quorum: Int, all: Int) {
        #expect(AckPolicy.none.requiredAcks(sites: sites) == 0)
        #expect(AckPolicy.one.requiredAcks(sites: sites) == one)
        #expect(AckPolicy.quorum.requiredAcks(sites: sites) == quorum)
        #expect(AckPolicy.all.requiredAcks(sites: sites) == all)
    }

    @Test(arguments: [
        ("permanent,nobuffer", RepFlags([.permanent, .noBuffer])),
        ("anywhere", RepFlags.anywhere),
        ("rerequest, PERMANENT", RepFlags([.rerequest, .permanent])),
        ("", RepFlags()),
    ])
    func flagListsParse(text: String, expected: RepFlags) throws {
        #expect(try RepFlags.parse(text).get() == expected)
    }

    @Test func unknownFlagIsNamed() {
        guard case .failure(let error) = RepFlags.parse("permanent,sometimes") else {
            Issue.record("accepted an unknown flag")
            return
        }
        #expect(error.word == "sometimes")
    }
}
