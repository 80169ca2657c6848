// ByteBuffer and FrameQueue against a plain array model, with random operation sequences; frame
// streams split at every boundary parse to the same frames.
import BrokerWire
import Testing

@Suite struct BufferTests {
    @Test func byteBufferMatchesAnArrayModel() {
        var generator = SystemRandomNumberGenerator()
        let buffer = ByteBuffer(capacity: 16)
        var model: [UInt8] = []
        var next: UInt8 = 0
        for _ in 0..<20_000 {
            switch Int.random(in: 0..<10, using: &generator) {
            case 0..<5:
                let chunk = (0..<Int.random(in: 0...300, using: &generator)).map { _ in next &+= 1; return next }
                buffer.append(chunk)
                model += chunk
            case 5..<8:
                let n = Int.random(in: 0...model.count, using: &generator)
                buffer.consume(n)
                model.removeFirst(n)
            case 8:
                let chunk = (0..<Int.random(in: 1...40, using: &generator)).map { _ in next &+= 1; return next }
                buffer.prepend(chunk)
                model.insert(contentsOf: chunk, at: 0)
            default:
                buffer.shrinkIfIdle()
            }
            #expect(Array(buffer.readable) == model)
        }
    }

    /// Draining keeps growth up to `retainedCapacity` (bursts do not reallocate); releasing gives it all back.
    @Test func releasingMemoryReturnsToTheInitialCapacityWhereClearingKeepsIt() {
        let queue = FrameQueue(capacity: 64)
        queue.buffer.append(Array(repeating: 7, count: 100_000))
        let grown = queue.buffer.capacity
        #expect(grown >= 100_000 && grown <= ByteBuffer.retainedCapacity)
        queue.clear()
        #expect(queue.isEmpty && queue.buffer.capacity == grown)
        queue.buffer.append([1, 2, 3])
        queue.releaseMemory()
        #expect(queue.isEmpty && queue.frontRemaining == 0 && queue.buffer.capacity == 64)
        queue.buffer.append([4, 5])
        #expect(Array(queue.readable) == [4, 5])
    }

    func messageFrame(_ rec: [UInt8], destination: Int32 = 2) -> [UInt8] {
        let buffer = ByteBuffer(capacity: 64)
        let header = MessageHeader(destination: destination, controlLength: 0, recLength: UInt32(rec.count))
        rec.withUnsafeBytes { header.append(control: UnsafeRawBufferPointer(start: nil, count: 0), rec: $0, to: buffer) }
        return Array(buffer.readable)
    }

    @Test func frameQueueTracksPartialWritesAndDropsOnlyTheHalfWrittenFrame() {
        let queue = FrameQueue(capacity: 32)
        let frames = (0..<5).map { messageFrame(Array(repeating: UInt8($0), count: 10 + $0)) }
        for frame in frames { queue.buffer.append(frame) }
        queue.didWrite(frames[0].count + 3)  // all of frame 0, three bytes of frame 1
        #expect(queue.frontRemaining == frames[1].count - 3)
        #expect(queue.discardPartialFront())
        #expect(Array(queue.readable) == Array(frames[2...].joined()))
        #expect(!queue.discardPartialFront())
    }

    @Test func moveMessagesSkipsControlFramesAndRespectsTheLimit() {
        let queue = FrameQueue(capacity: 32)
        let welcome = FrameParser.encode(.welcome, body: WelcomeFrame(roleState: .receiver, siteID: 1, clientID: 1,
                                                                       maxMessage: 1).body)
        let first = messageFrame([1, 2, 3])
        let second = messageFrame(Array(repeating: 9, count: 100))
        queue.buffer.append(welcome)
        queue.buffer.append(first)
        queue.buffer.append(second)
        let target = ByteBuffer(capacity: 8)
        let result = queue.moveMessages(to: target, limit: first.count + 10)
        #expect(result.moved == 1 && result.payloadBytes == 3 && result.dropped == 1)
        #expect(Array(target.readable) == first)
        #expect(queue.isEmpty)
    }

    @Test func inPlaceSendResultMatchesTheEncodedFrame() {
        let buffer = ByteBuffer(capacity: 8)
        let frame = SendResultFrame(sequence: 0x0102_0304_0506_0708, status: .unroutable)
        frame.append(to: buffer)
        #expect(Array(buffer.readable) == FrameParser.encode(.sendResult, body: frame.body))
    }

    @Test func framesSplitAtEveryOffsetParseTheSame() throws {
        let stream = messageFrame([7, 7, 7]) + FrameParser.encode(.heartbeat, body: []) + messageFrame([], destination: -1)
        for split in 0...stream.count {
            let buffer = ByteBuffer(capacity: 8)
            var types: [FrameType] = []
            for part in [Array(stream[..<split]), Array(stream[split...])] {
                buffer.append(part)
                while let frame = try FrameParser.next(in: buffer.readable, maxMessage: 1024) {
                    types.append(frame.type)
                    buffer.consume(frame.totalSize)
                }
            }
            #expect(types == [.message, .heartbeat, .message], "split at \(split)")
            #expect(buffer.isEmpty)
        }
    }
}
