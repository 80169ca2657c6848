// A reference the hot path reads without reference counting. Swift retains an object loaded from a `var`
// (or an `unowned(unsafe)` property) around every call it cannot see into; on the per-message path those
// atomic pairs cost more than the work. A `Borrowed` mirrors a strong reference that some owner holds
// (each property says which); it must be updated whenever that reference changes, and is used only on
// a thread that holds whatever keeps that owner's reference from changing (the event loop's thread in the
// broker; the write lock in the client). Sharing an object's reference count between threads also makes
// its cache line bounce between cores on every retain.

public struct Borrowed<Object: AnyObject> {
    @usableFromInline let reference: Unmanaged<Object>

    @inlinable public init(_ object: Object) { reference = .passUnretained(object) }

    /// Runs `body` with the object, guaranteed alive by its owner for the call.
    @inlinable @inline(__always)
    public func with<Result, Failure: Error>(_ body: (Object) throws(Failure) -> Result) throws(Failure) -> Result {
        let outcome: Swift.Result<Result, Failure> = reference._withUnsafeGuaranteedRef { object in
            do throws(Failure) { return .success(try body(object)) } catch { return .failure(error) }
        }
        return try outcome.get()
    }
}
