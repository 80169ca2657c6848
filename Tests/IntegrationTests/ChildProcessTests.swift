// The harness's children: an exit is seen when the child exits, whatever other children start beside it.
import BrokerHarness
import Foundation
import Synchronization
import Testing

@Suite struct ChildProcessTests {
    /// Short children started on many threads at once, beside long ones: each short child's exit is seen at
    /// once, and so is each long one's when it is killed (a child that inherited another's exit socket would hide
    /// that exit until it ended itself: a CI run's compiler was so waited on for 180 s).
    @Test func anExitIsSeenWhileOtherChildrenStartBesideIt() throws {
        let threads = 8
        let rounds = 25
        let longLived = Mutex<[ChildProcess]>([])
        let unseen = Mutex(0)
        defer { for child in longLived.withLock({ $0 }) { child.kill9() } }
        let group = DispatchGroup()
        for thread in 0..<threads {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                for _ in 0..<rounds {
                    if thread % 2 == 0 {
                        if let child = try? ChildProcess(name: "sleep", executable: "/bin/sleep", arguments: ["60"]) {
                            longLived.withLock { $0.append(child) }
                        }
                        continue
                    }
                    guard let child = try? ChildProcess(name: "true", executable: "/bin/true", arguments: []),
                          child.waitForExit(timeout: 10) == 0 else {
                        unseen.withLock { $0 += 1 }
                        continue
                    }
                }
            }
        }
        group.wait()
        #expect(unseen.withLock { $0 } == 0)
        let killed = longLived.withLock { $0 }
        #expect(killed.count == threads / 2 * rounds)
        for child in killed { child.signal(SIGKILL) }
        #expect(killed.filter { $0.waitForExit(timeout: 5) == nil }.isEmpty, "every killed child's exit is seen")
    }
}
