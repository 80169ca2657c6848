#!/usr/bin/env python3
"""Writes frames.json: golden frames built from ipc/PROTOCOL.md with Python's struct module, independently
of the Swift codecs. BrokerWireTests decodes every valid frame, checks its fields, re-encodes it and compares
bytes; every invalid frame must be rejected with the named error. Run: python3 ipc/vectors/generate.py"""
import hashlib
import hmac
import json
import os
import struct

MAGIC = 0xB7
TYPES = {"REGISTER": 0x01, "WELCOME": 0x02, "ROLE": 0x03, "SEND_RESULT": 0x04, "ERROR": 0x05,
         "SITE_EVENT": 0x06, "ACK": 0x07, "ACK_POLICY": 0x08, "MASTER": 0x09, "SUBSCRIBE": 0x0A,
         "CHANNEL": 0x11, "CHANNEL_RESULT": 0x12,
         "MESSAGE": 0x10, "HELLO": 0x20, "ACTIVATE": 0x21, "HEARTBEAT": 0x22, "GROUP_BIND": 0x23,
         "PEER_ACK": 0x24, "PEER_MASTER": 0x25, "MEMBERS": 0x26, "REMOVE_SITE": 0x27, "AUTH": 0x28, "CREDIT": 0x29, "PEER_RECEIVER": 0x2A}
VERSION = 6
OLDEST = 5  # the version before: a broker speaks both (PROTOCOL.md, "Versioning")


def frame(kind, body, magic=MAGIC, reserved=0, length=None):
    return struct.pack("<IBBH", len(body) if length is None else length, TYPES[kind], magic, reserved) + body


def message(group, source, destination, flags, lsn_file, lsn_offset, control, rec, sequence):
    return struct.pack("<IiiIIIIIQ", group, source, destination, flags, lsn_file, lsn_offset,
                       len(control), len(rec), sequence) + control + rec


valid = [
    ("register", "REGISTER", struct.pack("<HHiHHIHH", VERSION, 3, 4242, 7, 8, 0, OLDEST, 0) + b"default" + b"writer-1",
     {"version": VERSION, "min_version": OLDEST, "roles": 3, "pid": 4242, "group": "default", "name": "writer-1",
      "ring_bytes": 0}),
    ("register-no-name", "REGISTER", struct.pack("<HHiHHIHH", VERSION, 1, 1, 2, 0, 0, OLDEST, 0) + b"g1",
     {"version": VERSION, "min_version": OLDEST, "roles": 1, "pid": 1, "group": "g1", "name": "", "ring_bytes": 0}),
    ("register-shm", "REGISTER", struct.pack("<HHiHHIHH", VERSION, 1, 77, 1, 0, 1 << 20, OLDEST, 0) + b"g",
     {"version": VERSION, "min_version": OLDEST, "roles": 1, "pid": 77, "group": "g", "name": "", "ring_bytes": 1 << 20}),
    # The version before: 16 bytes of fixed part, no min_version (it speaks its version alone).
    ("register-v5", "REGISTER", struct.pack("<HHiHHI", OLDEST, 3, 4242, 7, 8, 0) + b"default" + b"writer-1",
     {"version": OLDEST, "min_version": OLDEST, "roles": 3, "pid": 4242, "group": "default", "name": "writer-1",
      "ring_bytes": 0}),
    ("welcome", "WELCOME", struct.pack("<HHiIIQ", VERSION, 1, 2, 7, 0, 64 << 20),
     {"version": VERSION, "role_state": 1, "site_id": 2, "client_id": 7, "ring_bytes": 0, "max_message": 64 << 20}),
    ("welcome-v5", "WELCOME", struct.pack("<HHiIIQ", OLDEST, 1, 2, 7, 0, 64 << 20),
     {"version": OLDEST, "role_state": 1, "site_id": 2, "client_id": 7, "ring_bytes": 0, "max_message": 64 << 20}),
    ("welcome-shm", "WELCOME", struct.pack("<HHiIIQ", VERSION, 0, 2, 8, 1 << 20, 64 << 20),
     {"version": VERSION, "role_state": 0, "site_id": 2, "client_id": 8, "ring_bytes": 1 << 20, "max_message": 64 << 20}),
    ("role", "ROLE", struct.pack("<HH", 1, 0), {"role_state": 1}),
    ("send-result", "SEND_RESULT", struct.pack("<QII", 9, 1, 0), {"sequence": 9, "status": 1}),
    ("error", "ERROR", struct.pack("<I", 2) + b"bad frame", {"code": 2, "reason": "bad frame"}),
    ("message", "MESSAGE", message(1, 3, -1, 0x6, 1, 4096, b"ctl", b"record", 0),
     {"group": 1, "source": 3, "destination": -1, "flags": 6, "lsn_file": 1, "lsn_offset": 4096,
      "control": b"ctl".hex(), "rec": b"record".hex(), "sequence": 0}),
    ("message-empty", "MESSAGE", message(0, 0, 2, 0, 0, 0, b"", b"", 77),
     {"group": 0, "source": 0, "destination": 2, "flags": 0, "lsn_file": 0, "lsn_offset": 0,
      "control": "", "rec": "", "sequence": 77}),
    ("hello", "HELLO", struct.pack("<IHHiIQHHI", 0x4C504252, OLDEST, VERSION, 2, 0, 0x0102030405060708, 0, 0, 512 << 10) + bytes(16),
     {"magic": 0x4C504252, "version": OLDEST, "max_version": VERSION, "site_id": 2, "incarnation": 0x0102030405060708, "address": "", "joining": 0,
      "keyed": 0, "nonce": bytes(16).hex(), "window": 512 << 10}),
    # A broker of the version before: max_version 0 (it speaks its version alone).
    ("hello-v5", "HELLO", struct.pack("<IHHiIQHHI", 0x4C504252, OLDEST, 0, 3, 0, 5, 0, 0, 512 << 10) + bytes(16),
     {"magic": 0x4C504252, "version": OLDEST, "max_version": 0, "site_id": 3, "incarnation": 5, "address": "", "joining": 0,
      "keyed": 0, "nonce": bytes(16).hex(), "window": 512 << 10}),
    ("hello-joining-keyed", "HELLO", struct.pack("<IHHiIQHHI", 0x4C504252, OLDEST, VERSION, 4, 0, 9, 14, 3, 65536) + bytes(range(16))
     + b"127.0.0.1:7004",
     {"magic": 0x4C504252, "version": OLDEST, "max_version": VERSION, "site_id": 4, "incarnation": 9, "address": "127.0.0.1:7004", "joining": 1,
      "keyed": 1, "nonce": bytes(range(16)).hex(), "window": 65536}),
    ("auth", "AUTH", hmac.new(b"group key", b"repbroker-auth-v1" + struct.pack("<i", 4) + bytes(range(16)) + bytes(16),
                              hashlib.sha256).digest(),
     {"mac": hmac.new(b"group key", b"repbroker-auth-v1" + struct.pack("<i", 4) + bytes(range(16)) + bytes(16),
                      hashlib.sha256).hexdigest(), "key": b"group key".hex(), "prover": 4,
      "prover_nonce": bytes(range(16)).hex(), "verifier_nonce": bytes(16).hex()}),
    ("members", "MEMBERS", struct.pack("<HH", 2, 0) + struct.pack("<iH", 1, 10) + b"hosta:7001" + struct.pack("<iH", 3, 10) + b"hostc:7003",
     {"count": 2, "members": "1=hosta:7001,3=hostc:7003"}),
    ("remove-site", "REMOVE_SITE", struct.pack("<iI", 4, 0), {"site_id": 4}),
    ("activate", "ACTIVATE", b"", {}),
    ("heartbeat", "HEARTBEAT", b"", {}),
    ("heartbeat-probe", "HEARTBEAT", struct.pack("<B7xQ", 1, 0x0102030405060708), {"kind": 1, "timestamp": 0x0102030405060708}),
    ("heartbeat-echo", "HEARTBEAT", struct.pack("<B7xQ", 2, 0xFFFFFFFFFFFFFFFF), {"kind": 2, "timestamp": 0xFFFFFFFFFFFFFFFF}),
    ("group-bind", "GROUP_BIND", struct.pack("<IHH", 1, 7, 0) + b"default", {"group": 1, "name": "default"}),
    ("send-result-ack-timeout", "SEND_RESULT", struct.pack("<QII", 10, 3, 0), {"sequence": 10, "status": 3}),
    ("send-result-ack-timeout-sites", "SEND_RESULT", struct.pack("<QIHHiii", 12, 3, 1, 2, 2, 3, 5),
     {"sequence": 12, "status": 3, "acked": "2", "missing": "3,5"}),
    ("site-up", "SITE_EVENT", struct.pack("<iHH", 3, 1, 0), {"site_id": 3, "up": 1}),
    ("site-down", "SITE_EVENT", struct.pack("<iHH", 2, 0, 0), {"site_id": 2, "up": 0}),
    ("ack", "ACK", struct.pack("<IIiI", 1, 28, 3, 0), {"lsn_file": 1, "lsn_offset": 28, "site_id": 3}),
    ("ack-policy", "ACK_POLICY", struct.pack("<HHI", 2, 0, 1000), {"policy": 2, "timeout_ms": 1000}),
    ("master", "MASTER", struct.pack("<iI", 2, 0), {"site_id": 2}),
    ("credit", "CREDIT", struct.pack("<IB3xII", 2, 0, 131072, 912), {"group": 2, "class": 0, "bytes": 131072, "acked": 912}),
    ("credit-channel", "CREDIT", struct.pack("<IB3xII", 65536, 1, 77, 0xFFFFFFFF),
     {"group": 65536, "class": 1, "bytes": 77, "acked": 0xFFFFFFFF}),
    ("peer-receiver", "PEER_RECEIVER", struct.pack("<IHH", 3, 1, 0), {"group": 3, "present": 1}),
    ("peer-receiver-gone", "PEER_RECEIVER", struct.pack("<IHH", 65536, 0, 0), {"group": 65536, "present": 0}),
    ("message-peer-sequence", "MESSAGE", message(2, 7, 3, 0x4, 1, 28, b"c", b"r", 0),
     {"group": 2, "source": 7, "destination": 3, "flags": 4, "lsn_file": 1, "lsn_offset": 28,
      "control": b"c".hex(), "rec": b"r".hex(), "sequence": 0}),
    ("message-to-master", "MESSAGE", message(0, 0, -3, 0x4, 2, 64, b"c", b"write", 5),
     {"group": 0, "source": 0, "destination": -3, "flags": 4, "lsn_file": 2, "lsn_offset": 64,
      "control": b"c".hex(), "rec": b"write".hex(), "sequence": 5}),
    ("send-result-partly-queued", "SEND_RESULT", struct.pack("<QII", 11, 4, 0), {"sequence": 11, "status": 4}),
    ("peer-ack", "PEER_ACK", struct.pack("<III", 1, 1, 28), {"group": 1, "lsn_file": 1, "lsn_offset": 28}),
    ("peer-master", "PEER_MASTER", struct.pack("<Ii", 1, 3), {"group": 1, "site_id": 3}),
    ("subscribe", "SUBSCRIBE", struct.pack("<HH", 6, 0) + b"writes", {"channel": "writes"}),
    ("channel-request", "CHANNEL", struct.pack("<IiiHHQII", 1, 2, -3, 1, 6, 42, 7, 5) + b"writes" + b"k=v;1",
     {"group": 1, "source": 2, "destination": -3, "kind": 1, "channel": "writes", "request_id": 42, "requester": 7,
      "payload": b"k=v;1".hex()}),
    ("channel-reply-empty", "CHANNEL", struct.pack("<IiiHHQII", 0, 0, 2, 2, 1, 42, 7, 0) + b"w",
     {"group": 0, "source": 0, "destination": 2, "kind": 2, "channel": "w", "request_id": 42, "requester": 7,
      "payload": ""}),
    ("channel-result", "CHANNEL_RESULT", struct.pack("<QII", 42, 7, 1), {"request_id": 42, "requester": 7, "status": 1}),
]

invalid = [
    ("bad-magic", frame("HEARTBEAT", b"", magic=0x00), "badMagic"),
    ("reserved-set", frame("HEARTBEAT", b"", reserved=1), "reservedNotZero"),
    ("unknown-type", struct.pack("<IBBH", 0, 0x7F, MAGIC, 0), "unknownType"),
    ("control-too-large", struct.pack("<IBBH", 65537, TYPES["REGISTER"], MAGIC, 0), "tooLarge"),
    ("message-too-large", struct.pack("<IBBH", 40 + (64 << 20) + 1, TYPES["MESSAGE"], MAGIC, 0), "tooLarge"),
    ("message-lengths-disagree",
     frame("MESSAGE", struct.pack("<IiiIIIIIQ", 0, 0, 2, 0, 0, 0, 10, 0, 0) + b"short"), "malformed"),
    ("message-short-header", frame("MESSAGE", b"\x00" * 12), "malformed"),
    ("message-unknown-flags", frame("MESSAGE", message(0, 0, 2, 0x100, 0, 0, b"", b"", 0)), "malformed"),
    ("register-empty-group", frame("REGISTER", struct.pack("<HHiHHI", 1, 1, 1, 0, 0, 0)), "malformed"),
    ("register-group-too-long", frame("REGISTER", struct.pack("<HHiHHI", 1, 1, 1, 65, 0, 0) + b"g" * 65), "malformed"),
    ("register-lengths-disagree", frame("REGISTER", struct.pack("<HHiHHI", 1, 1, 1, 9, 0, 0) + b"g"), "malformed"),
    ("register-not-utf8", frame("REGISTER", struct.pack("<HHiHHI", 1, 1, 1, 2, 0, 0) + b"\xff\xfe"), "malformed"),
    ("register-short", frame("REGISTER", struct.pack("<HHiHH", 1, 1, 1, 1, 0) + b"g"), "malformed"),
    ("welcome-short", frame("WELCOME", b"\x01\x00"), "malformed"),
    ("hello-bad-magic", frame("HELLO", struct.pack("<IHHiIQHHI", 0xDEADBEEF, 1, 0, 2, 0, 1, 0, 0, 0) + bytes(16)), "malformed"),
    ("hello-short", frame("HELLO", struct.pack("<IHHiIQHHI", 0x4C504252, 1, 0, 2, 0, 1, 0, 0, 0)), "malformed"),
    ("hello-unknown-flag", frame("HELLO", struct.pack("<IHHiIQHHI", 0x4C504252, 1, 0, 2, 0, 1, 0, 4, 0) + bytes(16)), "malformed"),
    ("auth-short", frame("AUTH", bytes(31)), "malformed"),
    ("hello-window-too-small", frame("HELLO", struct.pack("<IHHiIQHHI", 0x4C504252, VERSION, 0, 2, 0, 1, 0, 0, 65535) + bytes(16)), "malformed"),
    ("credit-zero-bytes", frame("CREDIT", struct.pack("<IB3xII", 1, 0, 0, 1)), "malformed"),
    ("credit-unknown-class", frame("CREDIT", struct.pack("<IB3xII", 1, 2, 100, 1)), "malformed"),
    ("credit-reserved-set", frame("CREDIT", struct.pack("<IBBBBII", 1, 0, 0, 1, 0, 100, 1)), "malformed"),
    ("credit-group-zero", frame("CREDIT", struct.pack("<IB3xII", 0, 0, 100, 1)), "malformed"),
    ("credit-short", frame("CREDIT", struct.pack("<IB3xI", 1, 0, 100)), "malformed"),
    ("peer-receiver-bad-flag", frame("PEER_RECEIVER", struct.pack("<IHH", 1, 2, 0)), "malformed"),
    ("peer-receiver-group-zero", frame("PEER_RECEIVER", struct.pack("<IHH", 0, 1, 0)), "malformed"),
    ("peer-receiver-short", frame("PEER_RECEIVER", struct.pack("<IH", 1, 1)), "malformed"),
    ("members-runs-past", frame("MEMBERS", struct.pack("<HH", 1, 0) + struct.pack("<iH", 1, 50) + b"x"), "malformed"),
    ("members-bad-site", frame("MEMBERS", struct.pack("<HH", 1, 0) + struct.pack("<iH", 0, 1) + b"x"), "malformed"),
    ("remove-site-zero", frame("REMOVE_SITE", struct.pack("<iI", 0, 0)), "malformed"),
    ("group-bind-empty-name", frame("GROUP_BIND", struct.pack("<IHH", 1, 0, 0)), "malformed"),
    ("send-result-unknown-status", frame("SEND_RESULT", struct.pack("<QII", 1, 99, 0)), "malformed"),
    ("send-result-sites-short", frame("SEND_RESULT", struct.pack("<QIHHi", 1, 3, 1, 1, 2)), "malformed"),
    ("send-result-sites-with-ok", frame("SEND_RESULT", struct.pack("<QIHHi", 1, 0, 1, 0, 2)), "malformed"),
    ("ack-policy-unknown", frame("ACK_POLICY", struct.pack("<HHI", 9, 0, 1000)), "malformed"),
    ("site-event-bad-state", frame("SITE_EVENT", struct.pack("<iHH", 2, 2, 0)), "malformed"),
    ("master-negative", frame("MASTER", struct.pack("<iI", -1, 0)), "malformed"),
    ("ack-short", frame("ACK", struct.pack("<II", 1, 28)), "malformed"),
    ("ack-no-site", frame("ACK", struct.pack("<IIiI", 1, 28, 0, 0)), "malformed"),
    ("peer-ack-short", frame("PEER_ACK", struct.pack("<II", 1, 1)), "malformed"),
    ("channel-unknown-kind", frame("CHANNEL", struct.pack("<IiiHHQII", 0, 0, 2, 9, 1, 1, 0, 0) + b"w"), "malformed"),
    ("channel-lengths-disagree", frame("CHANNEL", struct.pack("<IiiHHQII", 0, 0, 2, 0, 1, 1, 0, 9) + b"w"), "malformed"),
    ("channel-empty-name", frame("CHANNEL", struct.pack("<IiiHHQII", 0, 0, 2, 0, 0, 1, 0, 0)), "malformed"),
    ("subscribe-empty", frame("SUBSCRIBE", struct.pack("<HH", 0, 0)), "malformed"),
    ("channel-result-unknown-status", frame("CHANNEL_RESULT", struct.pack("<QII", 1, 1, 77)), "malformed"),
    ("channel-too-large", struct.pack("<IBBH", 32 + 64 + (64 << 20) + 1, TYPES["CHANNEL"], MAGIC, 0), "tooLarge"),
    ("register-unknown-role", frame("REGISTER", struct.pack("<HHiHHI", 1, 4, 1, 1, 0, 0) + b"g"), "malformed"),
    ("group-bind-index-zero", frame("GROUP_BIND", struct.pack("<IHH", 0, 1, 0) + b"g"), "malformed"),
    ("group-bind-index-too-large", frame("GROUP_BIND", struct.pack("<IHH", 65537, 1, 0) + b"g"), "malformed"),
]

document = {
    "comment": "Generated by ipc/vectors/generate.py from ipc/PROTOCOL.md. Little-endian; hex is a whole frame.",
    "max_message": 64 << 20,
    "valid": [{"name": n, "type": t, "hex": frame(t, b).hex(), "fields": f} for n, t, b, f in valid],
    "invalid": [{"name": n, "hex": h.hex(), "error": e} for n, h, e in invalid],
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frames.json")
with open(path, "w") as out:
    json.dump(document, out, indent=1, sort_keys=True)
    out.write("\n")
print(f"wrote {len(valid)} valid and {len(invalid)} invalid frames to {path}")


# Ring records (PROTOCOL.md, "Shared-memory rings"): what a producer writes into a fresh 4096-byte ring from a
# given start position, written independently of the Swift ring code. A record is uint32 length, uint32 kind
# and the payload padded to 8 (padding left as it was: zero in a fresh ring); a record that would straddle the
# end is preceded by a WRAP (length 0, kind 2) and starts at offset 0; a frame larger than ring_bytes / 4 - 8
# goes as FRAGMENT records (kind 4) of that size and a last FRAME (kind 1).
RING = 4096
MAX_PART = RING // 4 - 8


def ring_case(name, start, frames):
    data = bytearray(RING)
    head = start
    for whole in frames:
        parts = [whole[i:i + MAX_PART] for i in range(0, len(whole), MAX_PART)]
        for index, part in enumerate(parts):
            kind = 1 if index == len(parts) - 1 else 4
            need = 8 + ((len(part) + 7) & ~7)
            offset = head % RING
            if need > RING - offset:
                data[offset:offset + 8] = struct.pack("<II", 0, 2)
                head += RING - offset
                offset = 0
            data[offset:offset + 8] = struct.pack("<II", len(part), kind)
            data[offset + 8:offset + 8 + len(part)] = part
            head += need
    return {"name": name, "ring_bytes": RING, "start": start, "head": head,
            "frames": [f.hex() for f in frames], "data": bytes(data).hex()}


small = frame("MESSAGE", message(0, 1, 2, 0, 1, 28, b"ctl", b"record", 0))
site_event = frame("SITE_EVENT", struct.pack("<iHH", 3, 1, 0))
large = frame("MESSAGE", message(0, 1, 2, 0, 1, 96, b"c" * 10, bytes(range(256)) * 10, 0))  # 2,618 bytes: 3 parts
rings = {
    "comment": "Generated by ipc/vectors/generate.py from ipc/PROTOCOL.md: a fresh ring's data after a producer "
               "wrote `frames` in order from position `start` (head = tail = start before); `head` after.",
    "cases": [
        ring_case("two-frames", 0, [small, site_event]),
        ring_case("wrap-before-a-frame", 4040, [small, small]),
        ring_case("fragments-across-the-end", 3000, [small, large, site_event]),
    ],
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rings.json")
with open(path, "w") as out:
    json.dump(rings, out, indent=1, sort_keys=True)
    out.write("\n")
print(f"wrote {len(rings['cases'])} ring cases to {path}")
