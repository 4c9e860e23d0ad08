"""Benchmark: a build in a podman container (`environment.image`) against the same build on
the host. Goal (issue 17): at most 1.1x the host run for the seed Build.

The image is made offline the way the tests make theirs: `podman import` of a root holding
busybox-static, the host's podman client and node with their libraries (no image can be
pulled here), in a private overlay storage under a temporary directory. Workloads, each run
REPEAT times alternating host and container, medians reported:
- `small`: four phases, 40 shell commands, an artifact and a JUnit report;
- `image`: `podman build` of a small image and `podman image exists` (through the host's
  podman socket inside the container), then an artifact: the seed Build's image step;
- `node`: a node script that writes, reads and hashes 3,000 files (the seed Build's
  npm/ng steps are node work on many small files).
Also: the fixed cost of one container build (the podman service and the first `podman run`)
measured as the build of an empty phase.

Writes bench/results/buildspec_container.json. Run: .venv/bin/python bench/buildspec_container.py
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from conveyor.buildspec.run import run_buildspec
from conveyor.buildspec.spec import parse_buildspec

HERE = Path(__file__).resolve().parent
IMAGE = "localhost/conveyor-bench/buildenv:1"
REPEAT = 5
CONF = (
    '[containers]\ndefault_ulimits = ["nofile=1000:1000", "nproc=1000:1000"]\n'
    '[engine]\nruntime = "runc"\n'
)

SMALL = (
    "version: 0.2\nenv:\n  exported-variables: [N]\nphases:\n"
    + "".join(
        f"  {phase}:\n    commands:\n"
        + "".join(f"      - echo {phase} {i} >> log.txt && N={i}\n" for i in range(10))
        for phase in ("install", "pre_build", "build", "post_build")
    )
    + '      - export N && mkdir -p r && printf \'<testsuite name="s" tests="1">'
    '<testcase name="t"/></testsuite>\' > r/j.xml\n'
    "artifacts:\n  files: [log.txt]\nreports:\n  unit:\n    files: [r/j.xml]\n"
)

IMAGE_BUILD = f"""version: 0.2
phases:
  build:
    commands:
      - date > stamp.txt
      - printf 'FROM {IMAGE}\\nCOPY stamp.txt /stamp.txt\\n' > Containerfile
      - podman build -q -t localhost/conveyor-bench/app:$CODEBUILD_BUILD_NUMBER .
      - podman image exists localhost/conveyor-bench/app:$CODEBUILD_BUILD_NUMBER
artifacts:
  files: [stamp.txt]
"""

NODE_SCRIPT = """
const fs = require('fs'), crypto = require('crypto');
fs.mkdirSync('files', {recursive: true});
for (let i = 0; i < 3000; i++) fs.writeFileSync(`files/f${i}.js`, `export const v${i} = ${i};\\n`.repeat(40));
const h = crypto.createHash('sha256');
for (let i = 0; i < 3000; i++) h.update(fs.readFileSync(`files/f${i}.js`));
fs.writeFileSync('digest.txt', h.digest('hex'));
"""

NODE = """version: 0.2
phases:
  build:
    commands:
      - node bundle.js
artifacts:
  files: [digest.txt]
"""

EMPTY = "version: 0.2\nphases:\n  build:\n    commands: [':']\n"


def make_image(store: Path) -> None:
    """busybox-static, podman and node with their libraries, /root and /tmp: imported."""
    binaries = [shutil.which(b) for b in ("podman", "node")]
    tar_path = store / "root.tar"
    added: set[str] = set()
    with tarfile.open(tar_path, "w") as tar:
        tar.add(shutil.which("busybox") or "/bin/busybox", "bin/busybox")
        for applet in ("sh", "cat", "echo", "mkdir", "printf", "date", "test", "env"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for binary in binaries:
            if binary is None:
                continue
            real = os.path.realpath(binary)
            tar.add(real, "usr/bin/" + os.path.basename(binary))
            ldd = subprocess.run(["ldd", real], capture_output=True, text=True, check=True)
            for word in ldd.stdout.split():
                if word.startswith("/") and os.path.exists(word) and word not in added:
                    added.add(word)
                    tar.add(os.path.realpath(word), word.lstrip("/"))
        for d in ("root", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
    subprocess.run(["podman", "import", "-q", str(tar_path), IMAGE], check=True)


def timed(text: str, tmp: Path, name: str, image: str | None, n: int) -> float:
    src = tmp / f"src-{name}-{image is not None}-{n}"
    src.mkdir()
    (src / "bundle.js").write_text(NODE_SCRIPT)
    t0 = time.perf_counter()
    result = run_buildspec(
        parse_buildspec(text, f"{name}.yml"),
        {"src": src},
        None,
        tmp / f"work-{name}-{image is not None}-{n}",
        None,
        image=image,
        state_dir=tmp / "state",
        copy_sources=False,
        build_number=n,
    )
    took = time.perf_counter() - t0
    assert result.succeeded, (name, image, result.message, result.log_path)
    return took


def workload(text: str, tmp: Path, name: str) -> dict[str, float]:
    host: list[float] = []
    box: list[float] = []
    for n in range(REPEAT):
        host.append(timed(text, tmp, name, None, n))
        box.append(timed(text, tmp, name, IMAGE, n))
    h, c = statistics.median(host), statistics.median(box)
    return {
        "host_median_s": round(h, 3),
        "container_median_s": round(c, 3),
        "added_s": round(c - h, 3),
        "ratio": round(c / h, 2),
    }


def main() -> int:
    if not (shutil.which("podman") and shutil.which("busybox")):
        print("podman and busybox-static are needed")
        return 3
    results: dict[str, object] = {
        "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}",
        "podman": subprocess.run(
            ["podman", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "repeat": REPEAT,
    }
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as d:
        tmp = Path(d)
        store = tmp / "podman"
        store.mkdir()
        (store / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\nrunroot = "{store}/run"\ngraphroot = "{store}/graph"\n'
        )
        (store / "containers.conf").write_text(CONF)
        os.environ["CONTAINERS_STORAGE_CONF"] = str(store / "storage.conf")
        os.environ["CONTAINERS_CONF"] = str(store / "containers.conf")
        make_image(store)
        try:
            results["fixed_cost"] = workload(EMPTY, tmp, "empty")
            results["small"] = workload(SMALL, tmp, "small")
            results["image"] = workload(IMAGE_BUILD, tmp, "image")
            if shutil.which("node"):
                results["node"] = workload(NODE, tmp, "node")
        finally:
            subprocess.run(["podman", "system", "reset", "-f"], capture_output=True, check=False)
            subprocess.run(["umount", str(store / "graph" / "overlay")], capture_output=True)
    out = HERE / "results" / "buildspec_container.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
