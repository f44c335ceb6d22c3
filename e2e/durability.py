#!/usr/bin/env python3
"""Durability of `nsparse serve` under a full disk and under SIGKILL, end to end.

1. Disk full (needs root, for a 64 MiB tmpfs as the data directory; skipped with a message
   otherwise): ~10,000 acknowledged documents, the disk filled to ~1.5 MB free, a bulk that
   triggers a commit, then a completely full disk. Every write is either acknowledged or
   refused with 429 `cluster_block_exception`; acknowledged documents stay readable while the
   disk is full; once space is freed, writes resume by themselves; after a restart (SIGKILL,
   then a clean one) exactly the acknowledged documents are there and refused ones never
   reappear.
2. SIGKILL during writes to an index with a mapped `text` field (its own BM25 data) and two
   `rank_features` fields, one of them getting feature names no write used before: after every
   kill and restart, `match`, `neural_sparse`, `_count` and `_mget` agree with each other and
   with every acknowledged write, and every live document's new name finds it (only the
   documents of the request in flight at the kill may go either way).

Prints PASS/FAIL per check and `N passed, M failed`; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import Checks  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# Common words, all single tokens of the bert-base-uncased vocabulary.
WORDS = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force"
).split()


class Server:
    def __init__(self, binary: Path, data: Path, log: Path):
        self.binary, self.data, self.log = binary, data, log
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = [str(self.binary), "serve", "--data", str(self.data), "--addr", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nsparse serve exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/")[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"nsparse serve did not answer within 120 s:\n{self.tail()}")

    def request(self, method: str, path: str, body=None, timeout: float = 120) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                data, ctype = json.dumps(body).encode(), "application/json"
            elif isinstance(body, str):
                data, ctype = body.encode(), "application/x-ndjson"
            else:
                data, ctype = None, "application/json"
            conn.request(method, path, body=data, headers={"Content-Type": ctype})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else {})
        finally:
            conn.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("nsparse serve ignored SIGTERM for 120 s")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def document(i: int, version: int) -> dict:
    rng = random.Random(i * 1000 + version)
    words = rng.sample(WORDS, 24)
    parity = "alpha" if version % 2 else "beta"
    vector = {w: round(rng.uniform(0.1, 3.0), 3) for w in words}
    vector[parity] = 1.0
    # A second sparse field whose names are new with every write (any string is a feature).
    names = {f"name:{i}/v{version}": 1.0, f"名前-{version % 50}": 0.5}
    return {"title": f"{parity} common " + " ".join(words), "emb": vector, "names": names, "i": i, "v": version}


def bulk_body(actions: list[tuple[str, str, dict | None]]) -> str:
    lines = []
    for op, doc_id, source in actions:
        lines.append(json.dumps({op: {"_id": doc_id}}))
        if source is not None:
            lines.append(json.dumps(source))
    return "\n".join(lines) + "\n"


MAPPING = {
    "mappings": {
        "properties": {"title": {"type": "text"}, "emb": {"type": "rank_features"}, "names": {"type": "rank_features"}}
    }
}


# ---------------------------------------------------------------------------------------------
# 1. Disk full.


def fill(path: Path, leave_bytes: int) -> None:
    """Grows the filler file `path` until the filesystem has about `leave_bytes` free."""
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    with open(path, "ab") as f:
        to_write = max(0, free - leave_bytes)
        chunk = b"\0" * (1 << 20)
        while to_write > 0:
            n = min(len(chunk), to_write)
            try:
                f.write(chunk[:n])
                f.flush()
            except OSError:
                break
            to_write -= n


def disk_full(checks: Checks, binary: Path, work: Path) -> None:
    mount = work / "tmpfs"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        print(f"SKIP disk full: cannot mount a tmpfs ({mounted.stderr.decode().strip()}); run as root", flush=True)
        return
    server = Server(binary, mount / "data", work / "disk-full.log")
    filler = mount / "filler"
    try:
        server.start()
        acknowledged: dict[str, int] = {}
        refused: set[str] = set()
        with checks.case("disk full: 9,900 documents acknowledged before the disk fills"):
            status, body = server.request("PUT", "/full", MAPPING)
            expect(status == 200, f"PUT /full: {status} {body}")
            for start in range(0, 9900, 495):
                actions = [("index", f"d{i}", document(i, 1)) for i in range(start, start + 495)]
                status, body = server.request("POST", "/full/_bulk", bulk_body(actions))
                expect(status == 200 and not body.get("errors"), f"bulk at {start}: {status} {str(body)[:300]}")
                for i in range(start, start + 495):
                    acknowledged[f"d{i}"] = 1

        def send(ids: range, version: int) -> tuple[int, int]:
            actions = [("index", f"d{i}", document(i, version)) for i in ids]
            status, body = server.request("POST", "/full/_bulk", bulk_body(actions))
            expect(status == 200, f"bulk: {status} {str(body)[:300]}")
            ok = blocked = 0
            for item in body["items"]:
                result = item["index"]
                if result["status"] in (200, 201):
                    acknowledged[result["_id"]] = version
                    ok += 1
                else:
                    expect(
                        result["status"] == 429 and result["error"]["type"] == "cluster_block_exception",
                        f"a write on a full disk must be refused with 429 cluster_block_exception, got {result}",
                    )
                    refused.add(result["_id"])
                    blocked += 1
            return ok, blocked

        with checks.case("disk full: a bulk that triggers a commit on a nearly full disk loses nothing"):
            fill(filler, 1_500_000)
            ok, blocked = send(range(9900, 10400), 1)
            failed_commits = server.log.read_text(errors="replace").count("automatic commit failed")
            print(f"     {ok} acknowledged, {blocked} refused with 429, {failed_commits} failed automatic commits", flush=True)
            expect(failed_commits > 0, "the scenario must make the automatic commit fail (the server log shows none)")
        with checks.case("disk full: writes to a completely full disk are refused with 429"):
            fill(filler, 0)
            total_blocked = 0
            for attempt in range(5):
                _, blocked = send(range(20000 + attempt * 50, 20050 + attempt * 50), 1)
                total_blocked += blocked
            expect(total_blocked > 0, "no write was refused on a full disk")
        with checks.case("disk full: acknowledged documents stay readable (_mget, _count)"):
            sample = random.Random(7).sample(sorted(acknowledged), 300)
            status, body = server.request("POST", "/full/_mget", {"ids": sample})
            expect(status == 200, f"_mget: {status} {str(body)[:300]}")
            missing = [d["_id"] for d in body["docs"] if not d.get("found")]
            expect(not missing, f"acknowledged documents not found while the disk is full: {missing[:10]}")
            server.request("POST", "/full/_refresh")
            status, body = server.request("GET", "/full/_count")
            expect(body.get("count") == len(acknowledged), f"_count {body} != {len(acknowledged)} acknowledged")
        with checks.case("disk full: once space is freed, writes resume by themselves"):
            filler.unlink()
            ok, blocked = send(range(30000, 30001), 1)
            expect(ok == 1 and blocked == 0, f"a write after freeing space: {ok} ok, {blocked} refused")
        with checks.case("disk full: after SIGKILL and restart exactly the acknowledged documents are there"):
            server.kill()
            server.start()
            verify_exact(server, "full", acknowledged, refused)
        with checks.case("disk full: after a clean restart exactly the acknowledged documents are there"):
            server.stop()
            server.start()
            verify_exact(server, "full", acknowledged, refused)
    finally:
        server.kill()
        subprocess.run(["umount", str(mount)], capture_output=True)


def verify_exact(server: Server, index: str, acknowledged: dict[str, int], refused: set[str]) -> None:
    status, body = server.request("GET", f"/{index}/_count")
    expect(status == 200 and body.get("count") == len(acknowledged), f"_count {body} != {len(acknowledged)}")
    ids = sorted(acknowledged)
    for start in range(0, len(ids), 2000):
        status, body = server.request("POST", f"/{index}/_mget", {"ids": ids[start : start + 2000]})
        missing = [d["_id"] for d in body["docs"] if not d.get("found")]
        expect(not missing, f"acknowledged documents lost: {missing[:10]} ({len(missing)})")
    back = sorted(refused - set(acknowledged))
    if back:
        status, body = server.request("POST", f"/{index}/_mget", {"ids": back})
        found = [d["_id"] for d in body["docs"] if d.get("found")]
        expect(not found, f"documents refused with 429 reappeared: {found[:10]}")


# ---------------------------------------------------------------------------------------------
# 2. SIGKILL with per-field BM25 data.


def all_hits(server: Server, query: dict) -> set[str]:
    status, body = server.request(
        "POST", "/kill/_search", {"query": query, "size": 10000, "_source": False, "track_total_hits": True}
    )
    expect(status == 200, f"_search {query}: {status} {str(body)[:300]}")
    return {h["_id"] for h in body["hits"]["hits"]}


def observed_state(server: Server, ids: list[str]) -> dict[str, int]:
    """`_id` → version of every live document among `ids`, as `_mget` shows them."""
    live = {}
    for start in range(0, len(ids), 2000):
        status, body = server.request("POST", "/kill/_mget", {"ids": ids[start : start + 2000]})
        expect(status == 200, f"_mget: {status} {str(body)[:300]}")
        for d in body["docs"]:
            if d.get("found"):
                live[d["_id"]] = d["_source"]["v"]
    return live


def check_agreement(server: Server, ids: list[str], model: dict[str, int], in_flight: set[str], when: str) -> dict:
    server.request("POST", "/kill/_refresh")
    live = observed_state(server, ids)
    for doc_id in ids:
        if doc_id in in_flight:
            continue
        expect(
            live.get(doc_id) == model.get(doc_id),
            f"{when}: {doc_id} is {live.get(doc_id)} but the acknowledged state is {model.get(doc_id)}",
        )
    status, body = server.request("GET", "/kill/_count")
    expect(body.get("count") == len(live), f"{when}: _count {body.get('count')} but _mget finds {len(live)}")
    odd = {d for d, v in live.items() if v % 2}
    even = set(live) - odd
    for parity, want in (("alpha", odd), ("beta", even)):
        got = all_hits(server, {"match": {"title": parity}})
        expect(got == want, f"{when}: match {parity}: {len(got ^ want)} differ, e.g. {sorted(got ^ want)[:5]}")
        got = all_hits(server, {"neural_sparse": {"emb": {"query_tokens": {parity: 1.0}}}})
        expect(got == want, f"{when}: neural_sparse {parity}: {len(got ^ want)} differ, e.g. {sorted(got ^ want)[:5]}")
    got = all_hits(server, {"match": {"title": "common"}})
    expect(got == set(live), f"{when}: match common: {len(got ^ set(live))} differ, e.g. {sorted(got ^ set(live))[:5]}")
    # Every live document's own feature name (new with its write) finds it and nothing else.
    for doc_id in random.Random(len(live)).sample(sorted(live), min(80, len(live))):
        name = f"name:{doc_id[1:]}/v{live[doc_id]}"
        got = all_hits(server, {"neural_sparse": {"names": {"query_tokens": {name: 1.0}}}})
        expect(got == {doc_id}, f"{when}: the name {name!r} of {doc_id} finds {sorted(got)[:5]}")
    return live


def writer_child(port: int, seed: int, n_ids: int) -> None:
    """Child role: writes forever, printing every acknowledged item (killed by the parent)."""
    server = Server(Path(), Path(), Path(os.devnull))
    server.port = port
    rng = random.Random(seed)
    version = seed * 1000
    while True:
        version += 1
        actions = []
        for _ in range(rng.randint(1, 40)):
            doc_id = f"k{rng.randrange(n_ids)}"
            if rng.random() < 0.25:
                actions.append(("delete", doc_id, None))
            else:
                actions.append(("index", doc_id, document(int(doc_id[1:]), version)))
        print("SEND " + json.dumps([[op, d] for op, d, _ in actions]), flush=True)
        status, body = server.request("POST", "/kill/_bulk", bulk_body(actions))
        if status != 200:
            print(f"ERROR {status} {json.dumps(body)[:300]}", flush=True)
            continue
        out = []
        for item in body["items"]:
            (op, result), = item.items()
            out.append([op, result["_id"], result.get("status"), result.get("result")])
        print(f"ACK {version} " + json.dumps(out), flush=True)


def sigkill(checks: Checks, binary: Path, work: Path, kills: int) -> None:
    server = Server(binary, work / "kill-data", work / "kill.log")
    n_ids = 600
    ids = [f"k{i}" for i in range(n_ids)]
    model: dict[str, int] = {}
    try:
        server.start()
        with checks.case("sigkill: index with a text field and a rank_features field"):
            status, body = server.request("PUT", "/kill", MAPPING)
            expect(status == 200, f"PUT /kill: {status} {body}")
        rng = random.Random(11)
        for kill in range(kills):
            with checks.case(f"sigkill {kill + 1}/{kills}: match, neural_sparse, _count and _mget agree"):
                child = subprocess.Popen(
                    [sys.executable, __file__, "--child-port", str(server.port), "--child-seed", str(kill + 1)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                time.sleep(rng.uniform(0.5, 2.5))
                server.kill()  # SIGKILL while the child writes
                out, _ = child.communicate(timeout=60)
                in_flight: set[str] = set()
                acks = 0
                for line in out.splitlines():
                    if line.startswith("SEND "):
                        in_flight = {d for _, d in json.loads(line[5:])}
                    elif line.startswith("ACK "):
                        _, version, items = line.split(" ", 2)
                        for op, doc_id, status, result in json.loads(items):
                            if op == "delete" and status in (200, 404):
                                model.pop(doc_id, None)
                            elif op == "index" and status in (200, 201):
                                model[doc_id] = int(version)
                            acks += 1
                        in_flight = set()
                server.start()
                live = check_agreement(server, ids, model, in_flight, f"after kill {kill + 1}")
                # The in-flight request went one way or the other; continue from what is there.
                for doc_id in in_flight:
                    if doc_id in live:
                        model[doc_id] = live[doc_id]
                    else:
                        model.pop(doc_id, None)
                print(f"     {acks} acknowledged items before the kill, {len(live)} live documents", flush=True)
    finally:
        server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsparse", type=Path, default=REPO / "target" / "release" / "nsparse")
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--child-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_port:
        with contextlib.suppress(OSError, http.client.HTTPException, KeyboardInterrupt):
            writer_child(args.child_port, args.child_seed, 600)
        return 0
    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="nsparse-durability-"))
    try:
        disk_full(checks, args.nsparse, work)
        sigkill(checks, args.nsparse, work, args.kills)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"durability: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
