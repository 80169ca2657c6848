// Peer addresses on the loop: a host name is resolved by the resolver thread before a dial (again when its
// answer is old), its failures are shown as `unresolved` and retried with the dial backoff, and a broker with a
// wildcard --listen learns the address it advertises from its first peer connection.
import BrokerSystem
import BrokerWire

extension Broker {
    /// Dials `link`, or first asks the resolver when its address is a host name not resolved (lately).
    func dialOrResolve(_ link: PeerLink) {
        guard let address = link.address else { return }
        if address.needsResolution(now: now) {
            link.address?.resolving = true
            resolver.request(.site(link.siteID), address.text)
        } else if !address.resolving, address.resolved != nil {
            dial(link)
        }
    }

    /// Applies the resolver's answers: a failure is logged (warned once), shown as `unresolved` and retried
    /// with the dial backoff.
    func takeResolverAnswers() {
        for answer in resolver.takeAnswers() {
            switch answer.key {
            case .site(let siteID):
                guard let link = links[siteID], link.address?.text == answer.text else { continue }
                let failedBefore = link.address?.failure != nil
                guard let why = link.address?.take(answer.result, now: now) else {
                    dial(link)
                    continue
                }
                link.scheduleRedial(now: now)
                let metadata: Logger.Metadata = ["peer.site_id": "\(siteID)", "reason": why,
                                                 "retry_ms": "\((link.nextDialAt &- now) / 1_000_000)"]
                if failedBefore { logger.debug("cannot resolve peer address", metadata) } else {
                    logger.warning("cannot resolve peer address", metadata)
                }
            case .join(let index):
                guard joinTargets.indices.contains(index) else { continue }
                let failedBefore = joinTargets[index].failure != nil
                if let why = joinTargets[index].take(answer.result, now: now), !failedBefore {
                    logger.warning("cannot resolve join target", ["target": answer.text, "reason": why])
                }
            }
        }
    }

    /// With a wildcard --listen and no --advertise: the local address of a peer connection, with the listen
    /// port, is the address other sites can reach this one at.
    func learnAdvertisedAddress(from fd: CInt, connectionTo peer: String) {
        guard advertised == nil, let port = peerPort, let local = SocketAddress.local(of: fd, port: port),
              !local.isWildcard else { return }
        advertised = local.text
        logger.info("advertising this site's address", ["address": local.text, "learned_from": peer])
    }
}
