#!/usr/bin/env python3
"""Python multiprocessing on the workloads of shmproc's benchmarks example.

Same method as the Rust side: each workload is repeated until at least a fixed
minimum time has elapsed, several runs, median. Prints one JSON object on
stdout: {"python": version, "min_time": s, "runs": n, "results": {key: ops/s}}.
A workload that fails is left out of "results" (its error goes to stderr).

usage: bench_multiprocessing.py [--quick] [--only KEY_OR_FAMILY[,...]]
"""

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
import traceback

OBJ = "0" * 256  # a 256-byte object, as in the original benchmarks
SEQ_LEN = 1000  # elements per sequence (as the Rust side)

_timer = time.perf_counter


def measure(run_once, min_time, runs, ops_per_unit=1):
    """run_once(n) performs n units of work and returns the elapsed seconds.

    Grows n until one call takes at least min_time, then makes `runs` runs
    with that n; returns the median rate in operations per second.
    """
    n = 1
    while True:
        elapsed = run_once(n)
        if elapsed >= min_time:
            break
        if elapsed < min_time / 100:
            n *= 8
        else:
            n = max(n + 1, int(n * min_time / elapsed * 1.1))
    rates = [n * ops_per_unit / elapsed]
    for _ in range(runs - 1):
        rates.append(n * ops_per_unit / run_once(n))
    return statistics.median(rates)


# ---- 256-byte objects between processes ----------------------------------


def _put_objects(q, ready, n):
    ready.set()
    for _ in range(n):
        q.put(OBJ)
    q.put("STOP")


def _queue_run(ctx, q):
    def run_once(n):
        ready = ctx.Event()
        p = ctx.Process(target=_put_objects, args=(q, ready, n))
        p.start()
        ready.wait()
        t = _timer()
        while q.get() != "STOP":
            pass
        elapsed = _timer() - t
        p.join()
        return elapsed

    return run_once


def _send_objects(conn, ready, n):
    ready.set()
    for _ in range(n):
        conn.send(OBJ)
    conn.send("STOP")


def bench_pipe(ctx, mgr, cfg):
    r, w = ctx.Pipe(duplex=False)

    def run_once(n):
        ready = ctx.Event()
        p = ctx.Process(target=_send_objects, args=(w, ready, n))
        p.start()
        ready.wait()
        t = _timer()
        while r.recv() != "STOP":
            pass
        elapsed = _timer() - t
        p.join()
        return elapsed

    return measure(run_once, *cfg)


def bench_queue(ctx, mgr, cfg):
    return measure(_queue_run(ctx, ctx.Queue()), *cfg)


def _put_objects_on_go(q, ready, go, n):
    ready.set()
    go.wait()
    for _ in range(n):
        q.put(OBJ)
    q.put("STOP")


def _get_objects(q):
    while q.get() != "STOP":
        pass


def bench_queue_2to2(ctx, mgr, cfg):
    q = ctx.Queue()

    def run_once(n):
        ready = [ctx.Event(), ctx.Event()]
        go = ctx.Event()
        consumers = [ctx.Process(target=_get_objects, args=(q,)) for _ in range(2)]
        producers = [
            ctx.Process(target=_put_objects_on_go, args=(q, r, go, n)) for r in ready
        ]
        for p in consumers + producers:
            p.start()
        for r in ready:
            r.wait()
        t = _timer()
        go.set()
        for p in consumers:
            p.join()
        elapsed = _timer() - t
        for p in producers:
            p.join()
        return elapsed

    # Two producers put n objects each: 2 objects per unit.
    return measure(run_once, *cfg, ops_per_unit=2)


def bench_managed_queue(ctx, mgr, cfg):
    return measure(_queue_run(ctx, mgr().Queue()), *cfg)


# ---- locks ------------------------------------------------------------------


def _lock_run(lock):
    def run_once(n):
        acquire, release = lock.acquire, lock.release
        t = _timer()
        for _ in range(n):
            acquire()
            release()
        return _timer() - t

    return run_once


def bench_lock(ctx, mgr, cfg):
    return measure(_lock_run(ctx.Lock()), *cfg)


def bench_rlock(ctx, mgr, cfg):
    return measure(_lock_run(ctx.RLock()), *cfg)


def bench_managed_lock(ctx, mgr, cfg):
    return measure(_lock_run(mgr().Lock()), *cfg)


def bench_managed_rlock(ctx, mgr, cfg):
    return measure(_lock_run(mgr().RLock()), *cfg)


# ---- condition: interleaved waits/notifies by two processes -----------------


def _condition_peer(c, n):
    with c:
        c.notify()
        for _ in range(n):
            c.wait()
            c.notify()


def _condition_run(ctx, c):
    def run_once(n):
        with c:
            p = ctx.Process(target=_condition_peer, args=(c, n))
            p.start()
            c.wait()
            t = _timer()
            for _ in range(n):
                c.notify()
                c.wait()
            elapsed = _timer() - t
        p.join()
        return elapsed

    return run_once


def bench_condition(ctx, mgr, cfg):
    # Each round is two waits (one per process), as the original counted.
    return measure(_condition_run(ctx, ctx.Condition()), *cfg, ops_per_unit=2)


def bench_managed_condition(ctx, mgr, cfg):
    return measure(_condition_run(ctx, mgr().Condition()), *cfg, ops_per_unit=2)


# ---- integers retrieved from a sequence ---------------------------------------


def _seq_run(seq):
    def run_once(passes):
        t = _timer()
        for _ in range(passes):
            for j in range(SEQ_LEN):
                a = seq[j]  # noqa: F841
        return _timer() - t

    return run_once


def bench_list(ctx, mgr, cfg):
    return measure(_seq_run(list(range(SEQ_LEN))), *cfg, ops_per_unit=SEQ_LEN)


def bench_rawarray(ctx, mgr, cfg):
    arr = ctx.RawArray("i", range(SEQ_LEN))
    return measure(_seq_run(arr), *cfg, ops_per_unit=SEQ_LEN)


def bench_array(ctx, mgr, cfg):
    arr = ctx.Array("i", range(SEQ_LEN), lock=True)  # a lock per element read
    return measure(_seq_run(arr), *cfg, ops_per_unit=SEQ_LEN)


def bench_array_one_lock(ctx, mgr, cfg):
    arr = ctx.Array("i", range(SEQ_LEN), lock=True)

    def run_once(passes):
        t = _timer()
        for _ in range(passes):
            with arr.get_lock():
                raw = arr.get_obj()
                for j in range(SEQ_LEN):
                    a = raw[j]  # noqa: F841
        return _timer() - t

    return measure(run_once, *cfg, ops_per_unit=SEQ_LEN)


def bench_managed_list(ctx, mgr, cfg):
    seq = mgr().list(range(SEQ_LEN))

    def run_once(n):  # n element reads (a full pass is slow)
        t = _timer()
        for j in range(n):
            a = seq[j % SEQ_LEN]  # noqa: F841
        return _timer() - t

    return measure(run_once, *cfg)


# ---- managed dict gets ------------------------------------------------------------


def _dict_run(d):
    for i in range(100):
        d[i] = i * i

    def run_once(n):
        t = _timer()
        for i in range(n):
            a = d[i % 100]  # noqa: F841
        return _timer() - t

    return run_once


def bench_managed_dict(ctx, mgr, cfg):
    return measure(_dict_run(mgr().dict()), *cfg)


def bench_managed_dict_tcp(ctx, mgr, cfg):
    from multiprocessing.managers import SyncManager

    m = SyncManager(address=("127.0.0.1", 0), authkey=b"benchmark key", ctx=ctx)
    m.start()
    try:
        return measure(_dict_run(m.dict()), *cfg)
    finally:
        m.shutdown()


# ---- ping-pong ------------------------------------------------------------------


def _echo(conn):
    while True:
        x = conn.recv()
        if x is None:
            return
        conn.send(x)


def bench_pipe_roundtrip(ctx, mgr, cfg):
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo, args=(b,))
    p.start()

    def run_once(n):
        t = _timer()
        for _ in range(n):
            a.send(1)
            a.recv()
        return _timer() - t

    try:
        return measure(run_once, *cfg)
    finally:
        a.send(None)
        p.join()


# ---- process start ----------------------------------------------------------------


def _noop(*args):
    return None


def _start_run(method):
    c = mp.get_context(method)

    def run_once(n):
        t = _timer()
        for _ in range(n):
            p = c.Process(target=_noop)
            p.start()
            p.join()
        return _timer() - t

    return run_once


def bench_spawn(ctx, mgr, cfg):
    return measure(_start_run("spawn"), *cfg)


def bench_fork(ctx, mgr, cfg):
    return measure(_start_run("fork"), *cfg)


def bench_forkserver(ctx, mgr, cfg):
    _start_run("forkserver")(1)  # start the server outside the timed runs
    return measure(_start_run("forkserver"), *cfg)


# ---- pool ---------------------------------------------------------------------------


POOL_MAP_LEN = 100_000  # integers per map call (as the Rust side)


def bench_pool_map(ctx, mgr, cfg):
    with ctx.Pool(2) as pool:
        pool.map(_noop, range(10))

        def run_once(n):
            t = _timer()
            for _ in range(n):
                pool.map(_noop, range(POOL_MAP_LEN))
            return _timer() - t

        return measure(run_once, *cfg, ops_per_unit=POOL_MAP_LEN)


def bench_pool_imap(ctx, mgr, cfg):
    with ctx.Pool(2) as pool:
        pool.map(_noop, range(10))

        def run_once(n):
            t = _timer()
            for _ in pool.imap(_noop, range(n)):
                pass
            return _timer() - t

        return measure(run_once, *cfg)


def bench_pool_apply(ctx, mgr, cfg):
    with ctx.Pool(2) as pool:
        pool.map(_noop, range(10))

        def run_once(n):
            t = _timer()
            for _ in range(n):
                pool.apply_async(_noop, (7,)).get()
            return _timer() - t

        return measure(run_once, *cfg)


# key -> (family, function); the keys are the ones the Rust side asks for.
BENCHES = {
    "queue": ("objects", bench_queue),
    "queue_2to2": ("objects", bench_queue_2to2),
    "pipe": ("objects", bench_pipe),
    "managed_queue": ("objects", bench_managed_queue),
    "lock": ("lock", bench_lock),
    "rlock": ("lock", bench_rlock),
    "managed_lock": ("lock", bench_managed_lock),
    "managed_rlock": ("lock", bench_managed_rlock),
    "condition": ("condition", bench_condition),
    "managed_condition": ("condition", bench_managed_condition),
    "list": ("sequence", bench_list),
    "rawarray": ("sequence", bench_rawarray),
    "array": ("sequence", bench_array),
    "array_one_lock": ("sequence", bench_array_one_lock),
    "managed_list": ("sequence", bench_managed_list),
    "managed_dict": ("manager", bench_managed_dict),
    "managed_dict_tcp": ("manager", bench_managed_dict_tcp),
    "pipe_roundtrip": ("pingpong", bench_pipe_roundtrip),
    "spawn": ("spawn", bench_spawn),
    "fork": ("spawn", bench_fork),
    "forkserver": ("spawn", bench_forkserver),
    "pool_map": ("pool", bench_pool_map),
    "pool_imap": ("pool", bench_pool_imap),
    "pool_apply": ("pool", bench_pool_apply),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--only", help="comma-separated keys or families")
    args = ap.parse_args()
    min_time, runs = (0.02, 3) if args.quick else (0.25, 5)
    cfg = (min_time, runs)
    wanted = set(args.only.split(",")) if args.only else None
    keys = [
        k
        for k, (fam, _) in BENCHES.items()
        if wanted is None or k in wanted or fam in wanted
    ]

    ctx = mp.get_context("fork")
    manager = []

    def mgr():
        if not manager:
            manager.append(ctx.Manager())
        return manager[0]

    results = {}
    try:
        for i, key in enumerate(keys, 1):
            sys.stderr.write(f"\r\x1b[K  measuring python: {key} ({i}/{len(keys)}) ...")
            sys.stderr.flush()
            try:
                results[key] = BENCHES[key][1](ctx, mgr, cfg)
            except Exception:
                sys.stderr.write(f"\npython workload {key} failed:\n")
                traceback.print_exc()
    finally:
        if manager:
            manager[0].shutdown()
    json.dump(
        {"python": sys.version, "min_time": min_time, "runs": runs, "results": results},
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
