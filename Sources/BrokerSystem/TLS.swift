// TLS 1.3 sessions driven through memory, on the system's OpenSSL 3 loaded at run time (ipc/src/repbroker_tls.c).
// The I/O shell feeds what it read from a socket and writes what the session produced, so that the broker's
// core sees the same plain frames with TLS or without. Nothing here is loaded unless TLS is configured.
import CRepBrokerIPC

/// Why TLS failed: loading OpenSSL, a certificate or key, the handshake, or the stream.
public struct TLSError: Error, CustomStringConvertible, Equatable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Calls `body` with a buffer for a C function's reason, and throws it when `failed` says so.
@inline(__always)
private func withReason<T>(_ body: (UnsafeMutablePointer<CChar>, Int) -> T, failed: (T) -> Bool) throws(TLSError) -> T {
    var reason = [CChar](repeating: 0, count: 512)
    let result = reason.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    if failed(result) { throw TLSError(String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
    return result
}

/// Certificates and trust for every session of one kind: this site's certificate chain and key, and either
/// a CA the peer's chain must verify against or nothing (the caller checks a pin).
public final class TLSContext: @unchecked Sendable {
    let context: OpaquePointer

    /// Loads OpenSSL (once) and the PEM files. Throws with the file and OpenSSL's reason.
    public init(certificate: String, key: String, ca: String?) throws(TLSError) {
        let made = try withReason({ reason, size in
            rb_tls_context_new(certificate, key, ca, reason, size)
        }, failed: { $0 == nil })
        context = made!
    }

    deinit { rb_tls_context_free(context) }

    /// Whether OpenSSL 3 can be loaded here; the reason when not.
    public static func available() -> TLSError? {
        do {
            _ = try withReason({ rb_tls_load($0, $1) }, failed: { $0 != 0 })
            return nil
        } catch {
            return error
        }
    }
}

/// One connection's TLS session. Not thread-safe: one event loop drives it. Its calls allocate nothing: a
/// failure's reason goes into a buffer the session keeps.
public final class TLSSession {
    private let session: OpaquePointer
    private let reason = UnsafeMutablePointer<CChar>.allocate(capacity: reasonCapacity)
    private static let reasonCapacity = 512
    public private(set) var handshakeDone = false

    public init(_ context: TLSContext, server: Bool) throws(TLSError) {
        let made = try withReason({ reason, size in
            rb_tls_session_new(context.context, server ? 1 : 0, reason, size)
        }, failed: { $0 == nil })
        session = made!
        reason[0] = 0
    }

    deinit {
        rb_tls_session_free(session)
        reason.deallocate()
    }

    /// `result` when `failed` says it is not a failure; else throws the reason the call wrote.
    @inline(__always)
    private func checked<T>(_ call: (UnsafeMutablePointer<CChar>, Int) -> T, failed: (T) -> Bool) throws(TLSError) -> T {
        let result = call(reason, Self.reasonCapacity)
        if failed(result) { throw TLSError(String(cString: reason)) }
        return result
    }

    /// Bytes read from the socket.
    public func feed(_ bytes: UnsafeRawBufferPointer) throws(TLSError) {
        guard bytes.count > 0 else { return }
        guard rb_tls_feed(session, bytes.baseAddress, bytes.count) == 0 else { throw TLSError("out of memory") }
    }

    /// Advances the handshake; true once it is done. Take the output after each call.
    public func handshake() throws(TLSError) -> Bool {
        guard !handshakeDone else { return true }
        let result = try checked({ rb_tls_handshake(session, $0, $1) }, failed: { $0 < 0 })
        handshakeDone = result == 1
        return handshakeDone
    }

    /// Encrypts `plain` into the output.
    public func write(_ plain: UnsafeRawBufferPointer) throws(TLSError) {
        guard plain.count > 0 else { return }
        _ = try checked({ rb_tls_write(session, plain.baseAddress, plain.count, $0, $1) }, failed: { $0 < 0 })
    }

    /// Whether the peer closed the session (its close_notify was read).
    public private(set) var peerClosed = false

    /// Decrypts into `plain`: the bytes read, 0 when no whole record has arrived or the peer closed the session
    /// (`peerClosed`). Throws when the stream is corrupt or cut.
    public func read(into plain: UnsafeMutableRawBufferPointer) throws(TLSError) -> Int {
        let count = try checked({ rb_tls_read(session, plain.baseAddress, plain.count, $0, $1) }, failed: { $0 == -1 })
        if count == -2 {
            peerClosed = true
            return 0
        }
        return count
    }

    /// Queues a close_notify alert (sent with the rest of the output).
    public func closeNotify() {
        if handshakeDone { rb_tls_close_notify(session) }
    }

    /// Bytes waiting for the socket.
    public var outputPending: Int { rb_tls_output_pending(session) }

    /// Moves up to `buffer.count` bytes of output into `buffer`; how many.
    public func takeOutput(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        rb_tls_take_output(session, buffer.baseAddress, buffer.count)
    }

    /// The site id the peer's certificate names (SAN URI repbroker://site/ID).
    public func peerSite() throws(TLSError) -> Int32 {
        var site: Int32 = 0
        _ = try checked({ rb_tls_peer_site(session, &site, $0, $1) }, failed: { $0 != 0 })
        return site
    }

    /// The SHA-256 of the peer's certificate, in lowercase hex.
    public func peerSHA256() -> String? {
        var digest = [UInt8](repeating: 0, count: 32)
        guard rb_tls_peer_sha256(session, &digest) == 0 else { return nil }
        let hex = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
    }

    /// "TLSv1.3 TLS_AES_256_GCM_SHA384".
    public var description: String {
        var text = [CChar](repeating: 0, count: 128)
        rb_tls_describe(session, &text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
