// A strong reference the hot path can read without reference counting. Swift retains an object loaded from
// a stored property around every call it cannot see into; on the per-message path those atomic pairs cost
// more than the work (`scripts/compare-builds ipc`, 64-byte messages: without it the broker spent half its
// cycles in swift_retain/swift_release and delivered about a third fewer messages per second).
//
//     @Borrowable var receiver: LocalClient?     // an ordinary strong optional
//     group.$receiver?.with { $0.deliver(...) }  // the hot path: no retain, no release
//
// One declaration holds both, so they cannot drift apart. `with` is for the thread that owns the property
// (the event loop's, in the broker): the owner keeps the object alive for the call.

@propertyWrapper
public struct Borrowable<Object: AnyObject> {
    private var strong: Object?
    @usableFromInline var unretained: Unmanaged<Object>?

    public init(wrappedValue: Object?) {
        strong = wrappedValue
        unretained = wrappedValue.map { .passUnretained($0) }
    }

    public var wrappedValue: Object? {
        get { strong }
        set {
            strong = newValue
            unretained = newValue.map { .passUnretained($0) }
        }
    }

    /// The reference for the hot path, nil when the property is.
    @inlinable public var projectedValue: Borrowed<Object>? { unretained.map(Borrowed.init) }
}

/// A reference read without reference counting; see `Borrowable`.
public struct Borrowed<Object: AnyObject> {
    @usableFromInline let reference: Unmanaged<Object>

    @inlinable init(_ reference: Unmanaged<Object>) { self.reference = reference }

    /// Runs `body` with the object, which its owner keeps alive for the call.
    @inlinable @inline(__always)
    public func with<Result>(_ body: (Object) -> Result) -> Result {
        reference._withUnsafeGuaranteedRef(body)
    }
}
