// A thin Swift face on the Berkeley DB C API: errors with db_strerror, an environment handle and the
// database calls the site's processes make. Berkeley DB's methods are function pointers in its structs.
import CBerkeleyDB
import Foundation

public struct BDBError: Error, CustomStringConvertible {
    public let call: String
    public let code: Int32
    public var description: String { "\(call): \(String(cString: db_strerror(code))) (\(code))" }
}

@inline(__always)
func check(_ code: Int32?, _ call: String) throws(BDBError) {
    let value = code ?? EINVAL
    guard value == 0 else { throw BDBError(call: call, code: value) }
}

/// Calls `body` with a DBT over `bytes`, valid only during the call.
func withDBT<R>(_ bytes: inout [UInt8], _ body: (inout DBT) -> R) -> R {
    bytes.withUnsafeMutableBytes { raw in
        var dbt = DBT()
        dbt.data = raw.baseAddress
        dbt.size = UInt32(raw.count)
        return body(&dbt)
    }
}

/// An open DB_ENV.
public final class Environment: @unchecked Sendable {
    public let handle: UnsafeMutablePointer<DB_ENV>
    public let home: String

    /// Creates the handle, lets `configure` set it up (before open), then opens it.
    public init(home: String, flags: UInt32,
                configure: (UnsafeMutablePointer<DB_ENV>) throws -> Void = { _ in }) throws {
        var created: UnsafeMutablePointer<DB_ENV>?
        try check(db_env_create(&created, 0), "db_env_create")
        guard let env = created else { throw BDBError(call: "db_env_create", code: ENOMEM) }
        handle = env
        self.home = home
        env.pointee.set_errcall(env) { _, prefix, message in
            let text = message.map { String(cString: $0) } ?? ""
            FileHandle.standardError.write(Data("bdb: \(text)\n".utf8))
        }
        do {
            try configure(env)
            try check(env.pointee.open(env, home, flags, 0), "DB_ENV->open(\(home))")
        } catch {
            _ = env.pointee.close(env, 0)
            throw error
        }
    }

    public func close() { _ = handle.pointee.close(handle, 0) }

    /// The environment's replication role now: DB_REP_MASTER, DB_REP_CLIENT, or 0 before rep_start.
    public func replicationRole() throws(BDBError) -> UInt32 {
        var stats: UnsafeMutablePointer<DB_REP_STAT>?
        try check(handle.pointee.rep_stat(handle, &stats, 0), "DB_ENV->rep_stat")
        defer { free(stats) }
        return stats?.pointee.st_status ?? 0
    }

    /// Log records this client asked for again (missed: a gap it waited out) and received twice, since the
    /// environment was made (rep_stat's st_log_requested and st_log_duplicated).
    public func recordCounters() throws(BDBError) -> (requested: Int, duplicated: Int) {
        var stats: UnsafeMutablePointer<DB_REP_STAT>?
        try check(handle.pointee.rep_stat(handle, &stats, 0), "DB_ENV->rep_stat")
        defer { free(stats) }
        return (Int(stats?.pointee.st_log_requested ?? 0), Int(stats?.pointee.st_log_duplicated ?? 0))
    }

    /// Opens (and with `create`, creates) a btree database in its own transaction.
    public func openDatabase(_ name: String, create: Bool, readOnly: Bool = false) throws -> Database {
        var created: UnsafeMutablePointer<DB>?
        try check(db_create(&created, handle, 0), "db_create")
        guard let db = created else { throw BDBError(call: "db_create", code: ENOMEM) }
        var flags = UInt32(DB_THREAD)
        if create { flags |= UInt32(DB_CREATE) }
        if readOnly { flags |= UInt32(DB_RDONLY) } else { flags |= UInt32(DB_AUTO_COMMIT) }
        do {
            try check(db.pointee.open(db, nil, name, nil, DB_BTREE, flags, 0o644), "DB->open(\(name))")
        } catch {
            _ = db.pointee.close(db, 0)
            throw error
        }
        return Database(handle: db, environment: self)
    }
}

/// An open DB.
public final class Database: @unchecked Sendable {
    let handle: UnsafeMutablePointer<DB>
    let environment: Environment

    init(handle: UnsafeMutablePointer<DB>, environment: Environment) {
        self.handle = handle
        self.environment = environment
    }

    public func close() { _ = handle.pointee.close(handle, 0) }

    /// Puts one key/value pair in a transaction of its own and commits it.
    public func putCommitted(key: [UInt8], value: [UInt8]) throws(BDBError) {
        let env = environment.handle
        var txn: UnsafeMutablePointer<DB_TXN>?
        try check(env.pointee.txn_begin(env, nil, &txn, 0), "DB_ENV->txn_begin")
        guard let txn else { throw BDBError(call: "DB_ENV->txn_begin", code: ENOMEM) }
        var keyCopy = key
        var valueCopy = value
        let rc: Int32 = withDBT(&keyCopy) { keyDBT in
            withDBT(&valueCopy) { valueDBT in handle.pointee.put(handle, txn, &keyDBT, &valueDBT, 0) }
        }
        guard rc == 0 else {
            _ = txn.pointee.abort(txn)
            throw BDBError(call: "DB->put", code: rc)
        }
        try check(txn.pointee.commit(txn, 0), "DB_TXN->commit")
    }

    /// `putCommitted`, again while Berkeley DB picks this transaction as a deadlock's loser (it was aborted, so
    /// it is simply retried). Returns how many retries it took.
    public func putRetrying(key: [UInt8], value: [UInt8]) throws(BDBError) -> Int {
        var retries = 0
        while true {
            do {
                try putCommitted(key: key, value: value)
                return retries
            } catch where error.code == DB_LOCK_DEADLOCK && retries < 1000 {
                retries += 1
            }
        }
    }

    /// Every key/value pair in key order.
    public func all() throws(BDBError) -> [(key: [UInt8], value: [UInt8])] {
        var cursor: UnsafeMutablePointer<DBC>?
        try check(handle.pointee.cursor(handle, nil, &cursor, 0), "DB->cursor")
        guard let cursor else { return [] }
        defer { _ = cursor.pointee.close(cursor) }
        var pairs: [(key: [UInt8], value: [UInt8])] = []
        while true {
            var key = DBT()
            var value = DBT()
            let rc = cursor.pointee.get(cursor, &key, &value, UInt32(DB_NEXT))
            if rc == DB_NOTFOUND { return pairs }
            try check(rc, "DBC->get")
            pairs.append((Self.bytes(key), Self.bytes(value)))
        }
    }

    static func bytes(_ dbt: DBT) -> [UInt8] {
        guard let data = dbt.data, dbt.size > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: data, count: Int(dbt.size)))
    }
}
