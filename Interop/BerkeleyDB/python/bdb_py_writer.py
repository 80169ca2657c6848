#!/usr/bin/python3
"""A Berkeley DB writer process in Python: Debian's bsddb3 (pybsddb 6.2.9 on libdb 5.3) with the repbroker
module (ipc/python, ctypes over librepbroker): repbroker.attach_writer makes its DBEnv a writer of the site. It
joins the site's environment (opened by repbroker-site), commits COUNT transactions of one put each when its site is master, and
prints `acked KEY` / `unacked KEY` and a JSON summary last, as `bdb-site write` does.

    bdb_py_writer.py --home DIR --socket PATH --count N [--prefix TEXT] [--ack-policy quorum] [--value-size 100]
"""
import argparse
import json
import time

from bsddb3 import db

import repbroker

parser = argparse.ArgumentParser()
parser.add_argument("--home", required=True)
parser.add_argument("--socket", required=True)
parser.add_argument("--count", type=int, required=True)
parser.add_argument("--prefix", default="py")
parser.add_argument("--ack-policy", default="quorum")
parser.add_argument("--value-size", type=int, default=100)
parser.add_argument("--group", default="default")
args = parser.parse_args()

env = db.DBEnv()
env.set_thread_count(64)
env.set_lk_detect(db.DB_LOCK_DEFAULT)
writer = repbroker.attach_writer(env, socket_path=args.socket, group=args.group, name="bdb-py-write",
                                 ack_policy=args.ack_policy)
env.open(args.home, db.DB_THREAD | db.DB_INIT_TXN | db.DB_INIT_LOG | db.DB_INIT_LOCK | db.DB_INIT_MPOOL)
if env.rep_stat()["status"] != db.DB_REP_MASTER:
    raise SystemExit(3)
database = db.DB(env)
database.open("kv.db", dbtype=db.DB_BTREE, flags=db.DB_CREATE | db.DB_AUTO_COMMIT | db.DB_THREAD)

committed = acked = retries = 0
latencies = []
started = time.monotonic()
for index in range(args.count):
    key = f"{args.prefix}-{index:06d}"
    value = f"v-{key}-".encode().ljust(args.value_size, b"a")
    failures_before = writer.perm_failed
    begin = time.monotonic()
    while True:
        txn = env.txn_begin()
        try:
            database.put(key.encode(), value, txn=txn)
            txn.commit()
            break
        except db.DBLockDeadlockError:
            txn.abort()
            retries += 1
    latencies.append(int((time.monotonic() - begin) * 1e6))
    committed += 1
    if writer.perm_failed == failures_before:
        acked += 1
        print(f"acked {key}", flush=True)
    else:
        print(f"unacked {key}", flush=True)
print(json.dumps({"acked": acked, "committed": committed, "deadlock_retries": retries,
                  "elapsed_ms": int((time.monotonic() - started) * 1000), "latencies_us": latencies,
                  "perm_failures": writer.perm_failed, "startup_perm_failures": 0}, sort_keys=True), flush=True)
database.close()
env.close()
writer.close()
