// Where a peer site is dialled: the HOST:PORT text as configured, joined or learned (never a wildcard), and
// whether a HELLO on a connection dialled to it proved the site id. Only a proved (or configured) address is
// stored in the membership file. Names are resolved by the shell when it dials (off the event loop); a name
// that did not resolve is kept here as `failure`, shown as `unresolved` and retried with the dial backoff.

public struct PeerAddress: Sendable {
    public let text: String
    /// A HELLO from this address proved the site id (or the operator configured it).
    public var verified: Bool
    /// Why the last dial could not even start (the name did not resolve); nil otherwise.
    public var failure: String?

    /// Checks `text`: HOST:PORT, and not the unspecified address (good to listen on, never to dial).
    public static func parse(_ text: String, verified: Bool) -> Result<PeerAddress, AddressRefused> {
        guard let parsed = HostPort(text) else { return .failure(AddressRefused(text, "it is not HOST:PORT")) }
        guard !parsed.isWildcard else {
            return .failure(AddressRefused(text, "it is a wildcard address, which names no host to dial"))
        }
        return .success(PeerAddress(text: text, verified: verified))
    }

    init(text: String, verified: Bool) {
        self.text = text
        self.verified = verified
    }

    public struct AddressRefused: Error, CustomStringConvertible {
        public let text: String
        public let why: String
        init(_ text: String, _ why: String) {
            self.text = text
            self.why = why
        }
        public var description: String { "address '\(text)' refused: \(why)" }
    }
}
