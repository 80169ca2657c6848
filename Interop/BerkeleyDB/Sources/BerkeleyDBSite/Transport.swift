// Berkeley DB's send callback, bridged to the broker client. Every process of a site sets it with
// rep_set_transport(siteID, send): Berkeley DB calls it on whatever thread is inside the library.
import CBerkeleyDB
import Foundation
import RepBrokerClient
import Synchronization

/// What a process's callbacks need: its broker client and counters. Kept in DB_ENV's app_private.
public final class SiteTransport: @unchecked Sendable {
    public let client: BrokerClient
    public let siteID: Int32
    let permanentFailed = Atomic<Int>(0)
    let permanentSent = Atomic<Int>(0)

    public init(client: BrokerClient, siteID: Int32) {
        self.client = client
        self.siteID = siteID
    }

    public var permanentFailures: Int { permanentFailed.load(ordering: .relaxed) }
    /// PERMANENT messages the broker confirmed (sent, and acknowledged as the ack policy asks).
    public var permanentSends: Int { permanentSent.load(ordering: .relaxed) }

    /// Installs this transport on `env` (before or after open).
    public func install(on env: UnsafeMutablePointer<DB_ENV>) throws {
        env.pointee.app_private = Unmanaged.passUnretained(self).toOpaque()
        try check(env.pointee.rep_set_transport(env, siteID, repbrokerSend), "DB_ENV->rep_set_transport")
    }

    static func from(_ env: UnsafeMutablePointer<DB_ENV>?) -> SiteTransport? {
        guard let raw = env?.pointee.app_private else { return nil }
        return Unmanaged<SiteTransport>.fromOpaque(raw).takeUnretainedValue()
    }
}

func buffer(_ dbt: UnsafePointer<DBT>?) -> UnsafeRawBufferPointer {
    guard let dbt, let data = dbt.pointee.data, dbt.pointee.size > 0 else {
        return UnsafeRawBufferPointer(start: nil, count: 0)
    }
    return UnsafeRawBufferPointer(start: data, count: Int(dbt.pointee.size))
}

/// The send function: hands the message to the broker. Returns non-zero only when it must: the broker is
/// unreachable, or a PERMANENT message's ack policy was not met (Berkeley DB then flushes its log).
let repbrokerSend: @convention(c) (
    UnsafeMutablePointer<DB_ENV>?, UnsafePointer<DBT>?, UnsafePointer<DBT>?, UnsafePointer<DB_LSN>?, Int32, UInt32
) -> Int32 = { env, control, rec, lsnp, envid, flags in
    guard let transport = SiteTransport.from(env) else { return EINVAL }
    let lsn = lsnp.map { LSN(file: $0.pointee.file, offset: $0.pointee.offset) } ?? .zero
    let repFlags = RepFlags(rawValue: flags & RepFlags.known.rawValue)
    let permanent = repFlags.contains(.permanent)
    do {
        try transport.client.send(control: buffer(control), rec: buffer(rec), lsn: lsn, to: envid, flags: repFlags)
        if permanent { transport.permanentSent.add(1, ordering: .relaxed) }
        return 0
    } catch {
        if permanent { transport.permanentFailed.add(1, ordering: .relaxed) }
        return DB_REP_UNAVAIL
    }
}

/// Whether a process is alive, for failchk (set_isalive).
let processIsAlive: @convention(c) (UnsafeMutablePointer<DB_ENV>?, pid_t, db_threadid_t, UInt32) -> Int32 = {
    _, pid, _, _ in
    kill(pid, 0) == 0 || errno != ESRCH ? 1 : 0
}

/// The settings every process of a site makes before DB_ENV->open: thread tracking for failchk.
func configureCommon(_ env: UnsafeMutablePointer<DB_ENV>) throws {
    try check(env.pointee.set_thread_count(env, 64), "DB_ENV->set_thread_count")
    try check(env.pointee.set_isalive(env, processIsAlive), "DB_ENV->set_isalive")
    try check(env.pointee.set_lk_detect(env, UInt32(DB_LOCK_DEFAULT)), "DB_ENV->set_lk_detect")
}
