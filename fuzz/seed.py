#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (fuzz/corpus/TARGET) from the golden vectors in ipc/vectors and a few
configurations. Run: python3 fuzz/seed.py"""
import json
import os
import struct

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
frames = json.load(open(os.path.join(root, "ipc/vectors/frames.json")))
rings = json.load(open(os.path.join(root, "ipc/vectors/rings.json")))
PEER = {"HELLO": 0, "AUTH": 1, "MEMBERS": 2, "GROUP_BIND": 3, "PEER_ACK": 4, "PEER_MASTER": 5, "REMOVE_SITE": 6,
        "CREDIT": 7, "PEER_RECEIVER": 8}


def write(target, name, data):
    directory = os.path.join(root, "fuzz/corpus", target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


for vector in frames["valid"] + frames["invalid"]:
    data = bytes.fromhex(vector["hex"])
    write("frames", vector["name"], data)
    kind = vector.get("type") or next((k for k in PEER if vector["name"].upper().replace("-", "_").startswith(k)), None)
    if kind in PEER and len(data) >= 8:
        write("peer", vector["name"], bytes([PEER[kind]]) + data[8:])
for case in rings["cases"]:
    # Rings of 4096 bytes, as the ring target builds them: head and tail, then the data.
    write("ring", case["name"], struct.pack("<QQ", case["head"], case["start"]) + bytes.fromhex(case["data"]))
for name, config in {
    "minimal": {"site_id": 1},
    "full": {"site_id": 2, "listen": "127.0.0.1:7002", "peers": [{"site_id": 1, "address": "hosta:7001"}],
             "socket": "/run/repbroker/broker.sock", "admin_socket": "/run/repbroker/admin.sock", "log_level": "debug",
             "heartbeat_ms": 500, "peer_queue_bytes": 1 << 20, "flow_window_bytes": 1 << 20,
             "max_message_bytes": 1 << 20, "idle_strategy": "spin", "max_groups": 10, "allow_uids": [0, 1000]},
    "bad-site": {"site_id": -1},
}.items():
    write("config", name, json.dumps(config).encode())
print("seeds written to fuzz/corpus/")
