"""medley-ray on a two-node Ray cluster on one machine, writing to an S3-compatible server.

Everything listens on and talks to loopback addresses: the head is 127.0.0.2, the worker node
127.0.0.3, moto 127.0.0.1 (127.0.0.1 itself is avoided for Ray nodes: Ray swaps it for the
machine's own address). Checked while the runs go: no socket of the cluster's processes has a
peer or a bound address off loopback.

Scenarios, each on its own database: (a) a plain run, whose rows must equal a single-process
`medley index` of the same files, with tasks on both nodes, each seeing its GPU id, then run
again (nothing indexed, no table version added); (b) a worker killed mid-task; (c) the worker
node's raylet killed mid-task; and a `medley commit` run twice adding one version. Prints a JSON
report (timings included) on stdout; exits non-zero with the reason when a check fails.

Env: MEDLEY_BIN, MEDLEY_TEST_MEDIA, MEDLEY_HOME; run with the test venv's python.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import boto3
import lancedb
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEDLEY = os.environ["MEDLEY_BIN"]
MEDIA = os.environ["MEDLEY_TEST_MEDIA"]
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
# The sample media: photos, music and short videos (12 files, about 25 s for one process here).
FOLDERS = [os.path.join(MEDIA, d) for d in ("photos", "music", "videos")]
VECTOR_COLUMNS = ["visual", "audio", "music", "text", "bridge", "semantic"]
MARKER = f"medley-ray-test-{uuid.uuid4().hex}"


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def check(condition, message):
    if not condition:
        fail(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ephemeral_low():
    """The first port of the kernel's ephemeral range (where port 0 binds land)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def run(cmd, env, **kw):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)


class Cluster:
    """Head and worker node, each with 2 CPUs, 1 logical GPU, memory and object store capped."""

    def __init__(self, tmp, env):
        self.env = {
            **env,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
            # A dead node is noticed in about 3 s, not 30.
            "RAY_health_check_initial_delay_ms": "1000",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            "MEDLEY_RAY_TEST_MARKER": MARKER,
        }
        self.ray = os.path.join(os.path.dirname(sys.executable), "ray")
        self.port = free_port()
        self.address = f"{HEAD_IP}:{self.port}"
        self.temp = os.path.join(tmp, "ray")
        common = [
            "--num-cpus=2",
            "--num-gpus=1",
            "--memory=3000000000",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ]
        head = [self.ray, "start", "--head", f"--node-ip-address={HEAD_IP}", f"--port={self.port}",
                "--include-dashboard=false", f"--temp-dir={self.temp}", *common, *self.ports(0)]
        worker = [self.ray, "start", f"--address={self.address}", f"--node-ip-address={WORKER_IP}",
                  *common, *self.ports(100)]
        for cmd in (head, worker):
            out = run(cmd, self.env)
            check(out.returncode == 0, f"{' '.join(cmd)}: {out.stderr[-2000:]}")

    def ports(self, offset):
        names = ["node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc",
                 "runtime-env-agent", "metrics-export"]
        single = [free_port() for _ in names]
        # The worker ports below the kernel's ephemeral range, where the single ports (and the
        # head's --port) come from: Ray refuses a range holding another component's port.
        span = max(1000, min(20000, ephemeral_low() - 10000 - 200))
        taken = single + [self.port]
        base = 10000 + ((os.getpid() * 7) % span + offset) % span
        for _ in range(span):
            if not any(base <= p <= base + 60 for p in taken):
                break
            base = 10000 + (base - 10000 + 61) % span
        return [
            *(f"--{name}-port={port}" for name, port in zip(names, single)),
            f"--min-worker-port={base}",
            f"--max-worker-port={base + 60}",
        ]

    def raylet_pid(self, ip):
        for pid in pids():
            cmd = cmdline(pid)
            if "raylet" in cmd.split(" ")[0] and f"--node_ip_address={ip}" in cmd:
                return pid
        fail(f"no raylet for {ip}")

    def stop(self):
        run([self.ray, "stop", "--force"], self.env)


def pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def marked(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return MARKER.encode() in f.read()
    except OSError:
        return False


def tcp_table():
    """inode -> (local address, remote address, state) for every TCP socket."""
    out = {}
    for name, v6 in (("tcp", False), ("tcp6", True)):
        try:
            lines = open(f"/proc/net/{name}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            out[f[9]] = (addr(f[1], v6), addr(f[2], v6), f[3])
    return out


def addr(hex_addr, v6):
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    if v6:
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        text = socket.inet_ntop(socket.AF_INET6, raw)
        if text.startswith("::ffff:"):
            text = text[7:]
    else:
        text = socket.inet_ntop(socket.AF_INET, raw[::-1])
    return text, int(port, 16)


def loopback(ip):
    return ip.startswith("127.") or ip == "::1"


def wildcard(ip):
    return ip in ("0.0.0.0", "::")


class SocketWatch(threading.Thread):
    """Samples the sockets of the cluster's processes (and medley's under them) while a run goes."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop_flag = threading.Event()
        self.offenders = set()
        self.established = 0
        self.wildcard_listeners = set()

    def run(self):
        while not self.stop_flag.is_set():
            table = tcp_table()
            for pid in pids():
                if not marked(pid):
                    continue
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    except OSError:
                        continue
                    m = re.match(r"socket:\[(\d+)\]", target)
                    if not m or m.group(1) not in table:
                        continue
                    (lip, lport), (rip, rport), state = table[m.group(1)]
                    name = cmdline(pid).split(" ")[0]
                    if state == "0A":  # listening
                        if wildcard(lip):
                            self.wildcard_listeners.add(f"{name}:{lport}")
                        elif not loopback(lip):
                            self.offenders.add(f"{name} listens on {lip}:{lport}")
                    elif state == "01":  # established
                        self.established += 1
                        if not (loopback(lip) and loopback(rip)):
                            self.offenders.add(f"{name}: {lip}:{lport} <-> {rip}:{rport}")
            self.stop_flag.wait(0.5)

    def finish(self):
        self.stop_flag.set()
        self.join()


class S3:
    def __init__(self, python, tmp):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                check(time.time() < deadline, "moto did not start")
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                     region_name="us-east-1").create_bucket(Bucket="media")
        self.env = {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
        }
        self.storage_options = {
            "aws_endpoint": self.endpoint,
            "allow_http": "true",
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
            "aws_region": "us-east-1",
        }

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def medley_ray(env, db, cluster, kill=None, extra=()):
    """Run `medley-ray index` on the sample media; `kill(line)` sees each progress line and may
    kill something (returning what it killed). Returns (exit status, report, stderr, killed)."""
    cmd = [sys.executable, "-m", "medley_ray", "index", *FOLDERS, "--db", db, "--files-per-task", "2",
           "--gpus-per-task", "1", "--cpus-per-task", "1", "--medley", MEDLEY, "--address", cluster.address,
           "--node-ip-address", HEAD_IP, "--json", *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, killed = [], None
    for line in proc.stderr:
        lines.append(line)
        if kill and killed is None:
            killed = kill(line)
    out = proc.stdout.read()
    proc.wait()
    stderr = "".join(lines)
    check(proc.returncode == 0, f"medley-ray exited {proc.returncode}:\n{stderr[-4000:]}")
    try:
        return json.loads(out), stderr, killed
    except json.JSONDecodeError:
        fail(f"medley-ray printed no report:\n{out[:1500]}\n{stderr[-4000:]}")


def table_rows(db, storage_options=None):
    conn = lancedb.connect(db, storage_options=storage_options) if storage_options else lancedb.connect(db)
    out = {}
    for name in ("media", "segments", "failures"):
        t = conn.open_table(name)
        out[name] = (t.to_arrow().to_pylist(), t.version)
    return out


def versions(db, storage_options):
    return {name: v for name, (_, v) in table_rows(db, storage_options).items()}


def exactly_once(rows, files, what):
    hashes = [r["content_hash"] for r in rows["media"][0]]
    check(len(hashes) == len(set(hashes)), f"{what}: a content hash twice in media")
    check(len(hashes) == files, f"{what}: {len(hashes)} media rows for {files} files")
    ids = [r["segment_id"] for r in rows["segments"][0]]
    check(len(ids) == len(set(ids)), f"{what}: a segment twice")
    check(not rows["failures"][0], f"{what}: failures {rows['failures'][0]}")


def same_rows(single, ray_rows):
    a = {r["content_hash"]: r for r in single["media"][0]}
    b = {r["content_hash"]: r for r in ray_rows["media"][0]}
    check(a.keys() == b.keys(), f"hashes differ: {sorted(a.keys() ^ b.keys())}")
    worst = 0.0
    for h, ra in a.items():
        rb = b[h]
        check(ra["path"] == rb["path"], f"{h}: path {ra['path']} vs {rb['path']}")
        for col in VECTOR_COLUMNS:
            if ra.get(col) is None and rb.get(col) is None:
                continue
            check((ra.get(col) is None) == (rb.get(col) is None), f"{h}: {col} null in one only")
            d = float(np.max(np.abs(np.asarray(ra[col]) - np.asarray(rb[col]))))
            worst = max(worst, d)
            check(d < 1e-3, f"{h}: {col} differs by {d}")
    segs = lambda rows: sorted(r["segment_id"] for r in rows["segments"][0])  # noqa: E731
    check(segs(single) == segs(ray_rows), "segments differ")
    return worst


def started_on(ip, line):
    m = re.search(r"task (\S+) started on " + re.escape(ip) + r" \(worker pid (\d+)", line)
    return (m.group(1), int(m.group(2))) if m else None


def main():
    tmp = tempfile.mkdtemp(prefix="medley-ray-test-")
    report = {}
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python", "medley_ray")}
    s3 = S3(sys.executable, tmp)
    env.update(s3.env)
    cluster = None
    try:
        files = sum(len(os.listdir(f)) for f in FOLDERS)

        t = time.monotonic()
        single_db = os.path.join(tmp, "single")
        out = run([MEDLEY, "index", *FOLDERS, "--db", single_db, "--json"], env)
        check(out.returncode == 0, f"medley index: {out.stderr[-2000:]}")
        report["one_process_s"] = round(time.monotonic() - t, 1)
        single = table_rows(single_db)

        t = time.monotonic()
        cluster = Cluster(tmp, env)
        report["cluster_start_s"] = round(time.monotonic() - t, 1)
        env = {**cluster.env}

        # (a) A plain run, watched for any traffic off loopback.
        watch = SocketWatch()
        watch.start()
        db_a = "s3://media/a.lance"
        t = time.monotonic()
        a, _, _ = medley_ray(env, db_a, cluster)
        report["two_nodes_s"] = round(time.monotonic() - t, 1)
        watch.finish()
        check(not watch.offenders, f"traffic off loopback: {sorted(watch.offenders)}")
        check(watch.established > 0, "the socket watch saw no connection at all")
        report["established_connections_seen"] = watch.established
        report["wildcard_listeners"] = sorted(watch.wildcard_listeners)
        rows_a = table_rows(db_a, s3.storage_options)
        exactly_once(rows_a, files, "run a")
        report["max_vector_difference"] = same_rows(single, rows_a)
        nodes = {p["node_ip"] for p in a["placements"]}
        check(nodes == {HEAD_IP, WORKER_IP}, f"tasks ran on {nodes}")
        for p in a["placements"]:
            check(p["gpu_ids"] == ["0"] and p["cuda_visible_devices"] == "0", f"task without its GPU id: {p}")
        report["run_a"] = {k: a[k] for k in ("indexed", "tasks", "workers", "retries")}
        report["run_a"]["commits"] = len(a["commits"])
        report["run_a"]["tasks_per_node"] = {ip: sum(p["node_ip"] == ip for p in a["placements"]) for ip in nodes}

        # Again: nothing indexed, no version added.
        before = versions(db_a, s3.storage_options)
        again, _, _ = medley_ray(env, db_a, cluster)
        check(again["indexed"] == 0 and again["tasks_skipped"] == again["tasks"], f"re-run did work: {again}")
        check(versions(db_a, s3.storage_options) == before, "re-running added a table version")

        # A commit run twice adds one version: a worker stages one new file, committed twice.
        extra = os.path.join(tmp, "extra")
        os.makedirs(extra)
        shutil.copy(os.path.join(MEDIA, "photos", "chelsea.png"), os.path.join(extra, "chelsea-copy.png"))
        with open(os.path.join(extra, "chelsea-copy.png"), "ab") as f:
            f.write(b"\0")  # another content hash, the same picture
        staged = run([MEDLEY, "index-worker", "--db", db_a, "--task", "manual"], env,
                     input=os.path.join(extra, "chelsea-copy.png") + "\n")
        check(staged.returncode == 0, f"index-worker: {staged.stderr[-2000:]}")
        commit = [MEDLEY, "commit", "--db", db_a, "--run", "manual", "--seq", "1"]
        first = run(commit, env, input=staged.stdout)
        check(first.returncode == 0, f"commit: {first.stderr[-2000:]}")
        after_first = versions(db_a, s3.storage_options)
        second = run(commit, env, input=staged.stdout)
        check(second.returncode == 0 and json.loads(second.stdout)["already_committed"], f"second commit: {second.stdout}")
        check(versions(db_a, s3.storage_options) == after_first, "the second commit added a version")
        check(after_first["media"] == before["media"] + 1, f"one commit, one media version: {before} -> {after_first}")
        check(len(table_rows(db_a, s3.storage_options)["media"][0]) == files + 1, "the staged item is in once")

        # (b) A worker killed mid-task: its task runs again elsewhere or after the restart.
        def kill_worker(line):
            found = started_on(WORKER_IP, line)
            if found:
                time.sleep(1.5)
                os.kill(found[1], signal.SIGKILL)
                return found
            return None

        db_b = "s3://media/b.lance"
        b, stderr_b, killed = medley_ray(env, db_b, cluster, kill=kill_worker)
        check(killed is not None, "no task started on the worker node")
        check(b["retries"] >= 1, f"the kill of worker {killed} was not noticed mid-task:\n{stderr_b[-3000:]}")
        exactly_once(table_rows(db_b, s3.storage_options), files, "run b (worker killed)")
        report["run_b"] = {"killed_worker_of_task": killed[0], "retries": b["retries"], "indexed": b["indexed"]}

        # (c) The worker node's raylet killed mid-task: the head node's worker does the rest.
        def kill_raylet(line):
            found = started_on(WORKER_IP, line)
            if found:
                time.sleep(1.5)
                pid = cluster.raylet_pid(WORKER_IP)
                os.kill(pid, signal.SIGKILL)
                return pid
            return None

        db_c = "s3://media/c.lance"
        t = time.monotonic()
        c, stderr_c, killed = medley_ray(env, db_c, cluster, kill=kill_raylet)
        check(killed is not None, "no task started on the worker node")
        check(c["retries"] >= 1, f"the raylet kill was not noticed mid-task:\n{stderr_c[-3000:]}")
        exactly_once(table_rows(db_c, s3.storage_options), files, "run c (raylet killed)")
        report["run_c"] = {"retries": c["retries"], "indexed": c["indexed"], "wall_s": round(time.monotonic() - t, 1)}
    finally:
        if cluster:
            cluster.stop()
        s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
