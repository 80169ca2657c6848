// Fuzz target: the broker's ring reader over a ring the other side corrupted. The input's first 16 bytes are
// the producer's head and the consumer's tail; the rest fills the ring's data (4096 bytes, zero-padded).
// Records are read and joined into frames (FRAME, FRAGMENT, WRAP, and every bad kind, length and position)
// until the reader reports an error or the ring is empty. Nothing may crash or read outside the ring.
// Compiled into one module with Sources/BrokerWire (scripts/fuzz): no import.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRing(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let ringBytes = 4096
    let control = UnsafeMutableRawPointer.allocate(byteCount: 192, alignment: 64)
    let ringData = UnsafeMutableRawPointer.allocate(byteCount: ringBytes, alignment: 64)
    defer {
        control.deallocate()
        ringData.deallocate()
    }
    control.initializeMemory(as: UInt8.self, repeating: 0, count: 192)
    ringData.initializeMemory(as: UInt8.self, repeating: 0, count: ringBytes)
    let input = UnsafeRawBufferPointer(start: data, count: size)
    var head: UInt64 = 0
    var tail: UInt64 = 0
    if size >= 16 {
        head = input.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        tail = input.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        ringData.copyMemory(from: data + 16, byteCount: min(size - 16, ringBytes))
    }
    control.storeBytes(of: head, toByteOffset: 0, as: UInt64.self)
    control.storeBytes(of: tail, toByteOffset: 64, as: UInt64.self)
    let ring = Ring(control: control, data: ringData, size: ringBytes)
    let reader = RingReader(ring)
    let assembler = FrameAssembler()
    for _ in 0..<1000 {
        do {
            guard let record = try reader.next() else { return 0 }
            if let frame = try assembler.add(kind: record.kind, payload: record.payload, maxFrame: 1 << 20) {
                _ = try? FrameParser.next(in: frame, maxMessage: 1 << 20)
            }
        } catch {
            return 0
        }
    }
    return 0
}
