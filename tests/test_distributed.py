"""ccs-run --ray on a real Ray cluster of two nodes on the loopback address (started with ``ray start`` here):
the same outputs as one process, the same per-file guarantees, and a worker killed mid-file costs one retry."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import sample_cuts

pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample.mp4"
RAY = str(Path(sys.executable).with_name("ray"))
RUN = [sys.executable, "-m", "ccstereo.runtime.cli"]
# sample-exact comparisons need the same engine and thread count everywhere (a worker uses its reserved CPUs)
SAME_ENGINE = ["--backend", "onnxruntime", "--precision", "fp32", "--threads", "1", "--no-tune"]


# The cluster lives in a network namespace of its own whose one interface is the loopback: Ray (2.60 measured)
# swaps a node address of 127.0.0.1 for the machine's network address and listens on every interface, so on the
# machine's own network the test cluster would be reachable from, and talk over, the machine's real address.
# Inside the namespace 127.0.0.1 is the only address there is. The holder brings the loopback up and waits.
HOLD = (
    "import fcntl, socket, struct, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "flags = struct.unpack('16sh', fcntl.ioctl(s, 0x8913, struct.pack('16sh', b'lo', 0)))[1]\n"  # SIOCGIFFLAGS
    "fcntl.ioctl(s, 0x8914, struct.pack('16sh', b'lo', flags | 1))\n"  # SIOCSIFFLAGS, IFF_UP
    "print('up', flush=True)\n"
    "sys.stdin.read()\n"
)


@dataclass
class Cluster:
    address: str
    env: dict
    enter: list[str]  # runs a command inside the cluster's network namespace

    def run(self, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self.enter, *cmd], capture_output=True, text=True, env=self.env, **kwargs)

    def popen(self, cmd: list[str]) -> subprocess.Popen:
        pipe = subprocess.PIPE
        return subprocess.Popen([*self.enter, *cmd], stdout=pipe, stderr=pipe, text=True, env=self.env)


@pytest.fixture(scope="module")
def loopback_namespace():
    """Yield the command prefix that enters a network namespace with the loopback interface only."""
    try:
        holder = subprocess.Popen(
            ["unshare", "--user", "--map-current-user", "--net", sys.executable, "-c", HOLD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError:
        holder = None
    if holder is None or holder.stdout.readline().strip() != "up":
        reason = "no loopback-only network namespace (unshare --user --net) on this machine"
        if holder is not None:
            reason += f": {holder.communicate(timeout=30)[1].strip()[-300:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield ["nsenter", f"--target={holder.pid}", "--user", "--net", "--preserve-credentials"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, loopback_namespace):
    """A head node and one more worker node, both on 127.0.0.1, one CPU each; stopped afterwards."""
    port = 6379  # the namespace is ours alone: no other process can hold a port in it
    temp = tmp_path_factory.mktemp("ray")
    # Ray >= 2.59 turns token authentication on for clusters started with `ray start`: the nodes and every driver
    # (ccs-run --ray-address) share a token made for this test, passed in the environment, nothing in ~/.ray.
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    ns = Cluster(f"127.0.0.1:{port}", env, loopback_namespace)
    head = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1"]
    head += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    started = ns.run(head, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        node = [RAY, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1"]
        joined = ns.run(node, timeout=180)
        assert joined.returncode == 0, joined.stderr[-2000:]
        yield ns
    finally:
        ns.run([RAY, "stop", "--force"], timeout=120)


def test_the_cluster_has_the_loopback_address_only(cluster):
    """The namespace's one interface is lo, and every socket the two nodes listen on is on 127.0.0.1."""
    script = (
        "from pathlib import Path\n"
        "print(*[line.split(':')[0].strip() for line in Path('/proc/net/dev').read_text().splitlines()[2:]])\n"
        "rows = [l.split() for t in ('tcp', 'tcp6') for l in Path('/proc/net', t).read_text().splitlines()[1:]]\n"
        "print(*[r[1] for r in rows if r[3] == '0A'])\n"  # 0A: LISTEN
    )
    shown = cluster.run([sys.executable, "-c", script], timeout=60)
    assert shown.returncode == 0, shown.stderr
    interfaces, listening = (line.split() for line in shown.stdout.splitlines())
    assert interfaces == ["lo"]
    loopback = ("0100007F:", "0000000000000000FFFF00000100007F:")  # 127.0.0.1, ::ffff:127.0.0.1
    assert len(listening) >= 4 and all(a.startswith(loopback) for a in listening), listening  # 2 GCS/raylets+


def _wav(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0]


def test_a_library_on_two_nodes_matches_one_process(cluster, tmp_path):
    address = cluster.address
    clips = sample_cuts(tmp_path / "in", 5, 3.0, 0.7)
    corrupt = tmp_path / "in" / "corrupt.mp4"
    corrupt.write_bytes(SAMPLE.read_bytes()[:3000])  # a cut-off file
    listing = tmp_path / "list.txt"
    listing.write_text("# the library\nin/clip*.mp4\nin/corrupt.mp4\n")
    single, ray_out = tmp_path / "single", tmp_path / "ray"
    single.mkdir()
    ray_out.mkdir()
    common = ["--format", "wav", "--model-band", "-q", *SAME_ENGINE]
    one = subprocess.run([*RUN, *map(str, clips), "-o", str(single), *common], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    done = ray_out / "clip0.binaural.wav"
    done.write_bytes(b"already here")  # an output from an earlier run: skipped, not overwritten
    report = tmp_path / "run.json"
    cmd = [*RUN, f"@{listing}", "-o", str(ray_out), *common, "--ray-address", address, "--workers", "2"]
    result = cluster.run([*cmd, "--report", str(report)], timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]  # the corrupt file failed; nothing else did
    assert result.stdout == ""  # Ray's logs stay out of the user's way
    assert "corrupt.mp4" in result.stderr and "1 failed" in result.stderr
    data = json.loads(report.read_text())
    status = {Path(e["input"]).name: e["status"] for e in data["files"]}
    assert status == {**{c.name: "ok" for c in clips[1:]}, "clip0.mp4": "skipped", "corrupt.mp4": "failed"}
    assert data["summary"]["ok"] == 4 and data["summary"]["skipped"] == 1 and data["summary"]["failed"] == 1
    assert done.read_bytes() == b"already here"
    for clip in clips[1:]:
        name = f"{clip.stem}.binaural.wav"
        assert np.array_equal(_wav(ray_out / name), _wav(single / name)), name
    engines = {e.get("engine") for e in data["files"] if e["status"] == "ok"}
    assert engines == {"onnxruntime-cpu-fp32"}
    assert not [p for p in ray_out.iterdir() if ".partial-" in p.name]


def _worker_pids(busy: bool = False) -> set[int]:
    """Return the pids of our Ray actors (Ray titles an actor's process ray::FileWorker, and
    ray::FileWorker.run while it runs that method)."""
    pattern = "ray::FileWorker.run" if busy else "ray::FileWorker"
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return {int(p) for p in found}


def test_a_worker_killed_mid_file_costs_one_retry_and_nothing_partial(cluster, tmp_path):
    address = cluster.address
    # Long enough that the kill lands mid-file: 24 s clips (the sample looped).
    folder = tmp_path / "in"
    folder.mkdir()
    clips = []
    for i in range(3):
        out = folder / f"long{i}.mp4"
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "2", "-i", str(SAMPLE), "-ss", str(0.3 * i)]
        subprocess.run([*cmd, "-c:v", "libx264", "-c:a", "aac", str(out)], check=True)
        clips.append(out)
    out_dir, report = tmp_path / "out", tmp_path / "run.json"
    out_dir.mkdir()
    cmd = [*RUN, *map(str, clips), "-o", str(out_dir), "--format", "wav", "--model-band", "-q", *SAME_ENGINE]
    cmd += ["--ray-address", address, "--workers", "2", "--report", str(report)]
    earlier = _worker_pids()  # workers of an earlier job may still be exiting: not this job's
    job = cluster.popen(cmd)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and job.poll() is None:
        busy = _worker_pids(busy=True) - earlier
        if busy and any(".partial-" in p.name for p in out_dir.iterdir()):
            killed = min(busy)
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    stdout, stderr = job.communicate(timeout=600)
    assert killed is not None, "no worker was caught mid-file"
    assert job.returncode == 0, stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["summary"]["ok"] == 3 and data["summary"]["retried"] >= 1, data["summary"]
    assert max(e["attempts"] for e in data["files"]) == 2
    assert not [p for p in out_dir.iterdir() if ".partial-" in p.name]
    for clip in clips:  # every output complete: as long as its input's sound
        audio = _wav(out_dir / f"{clip.stem}.binaural.wav")
        assert abs(len(audio) / 16000 - 24.0) < 0.5 and np.isfinite(audio).all()


def test_ray_flags_have_options_fields_and_bad_values_are_usage_errors(tmp_path):
    bad = subprocess.run([*RUN, str(SAMPLE), "--ray", "--workers", "0"], capture_output=True, text=True)
    assert bad.returncode == 2
    copy = tmp_path / "a.mp4"
    shutil.copy(SAMPLE, copy)
    listing = tmp_path / "missing.txt"
    result = subprocess.run([*RUN, f"@{listing}", "--ray"], capture_output=True, text=True)
    assert result.returncode == 2 and "missing.txt" in result.stderr


def test_two_inputs_with_one_output_are_refused_as_in_one_process(cluster, tmp_path):
    address = cluster.address
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "same.mp4", tmp_path / "b" / "same.mp4"
    shutil.copy(SAMPLE, first)
    shutil.copy(SAMPLE, second)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [*RUN, str(first), str(second), "-o", str(out), "--format", "wav", "-q", *SAME_ENGINE]
    result = cluster.run([*cmd, "--ray-address", address], timeout=600)
    assert result.returncode == 1
    clash = f"{out / 'same.binaural.wav'}: output of {second} is also the output of {first}"
    assert clash in result.stderr, result.stderr
    assert (out / "same.binaural.wav").is_file() and len(list(out.iterdir())) == 1


def test_progress_counts_media_seconds_as_files_finish(cluster, tmp_path):
    """The driver's media-seconds row: the run's seconds once probed, then each file's as it finishes."""
    address = cluster.address
    clips = sample_cuts(tmp_path / "in", 3, 2.0, 0.7)
    (tmp_path / "in" / "corrupt.mp4").write_bytes(SAMPLE.read_bytes()[:3000])
    script = (
        "import json, sys\nfrom pathlib import Path\n"
        "from ccstereo.runtime.jobs import Events, plan_jobs, run_files\n"
        "from ccstereo.runtime.options import LoadOptions, RunOptions\n"
        "from ccstereo.runtime.ray_executor import RayExecutor, ScaleOptions\n"
        "plan, seen = [], []\n"
        "class Heard(Events):\n"
        "    def planned(self, jobs): plan.append(sum(j.info.duration_s for j in jobs if j.info))\n"
        "    def finished(self, result): seen.append(result.media_s)\n"
        "jobs = plan_jobs([Path(p) for p in sys.argv[2:]], Path(sys.argv[1]), 'wav')\n"
        f"executor = RayExecutor(None, LoadOptions(threads=1), ScaleOptions(ray_address={address!r}))\n"
        "run_files(jobs, RunOptions(fmt='wav'), executor, Heard())\n"
        "print(json.dumps({'plan': plan, 'seen': seen}))\n"
    )
    (tmp_path / "out").mkdir()
    files = [*map(str, clips), str(tmp_path / "in" / "corrupt.mp4")]
    result = cluster.run([sys.executable, "-c", script, str(tmp_path / "out"), *files], timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    progress = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(progress["plan"]) == 1 and progress["plan"][0] == pytest.approx(3 * 2.0, abs=0.3)  # three 2 s cuts
    assert len(progress["seen"]) == 4 and sorted(progress["seen"])[0] == 0.0  # the corrupt file: no seconds
    assert sum(progress["seen"]) == pytest.approx(progress["plan"][0])
