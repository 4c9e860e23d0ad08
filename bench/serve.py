"""Benchmark: serving the example app, side by side on the same files.

Servers (each on a free loopback port, serving the same `ng build` output):
- `old-busybox`: the example image before Conveyor's `web` image (busybox `nc -ll` forking
  serve.sh per request), built from the Containerfile and docker/ of commit OLD_REF;
- `web`: the example image as it is now, FROM `localhost/conveyor/web` (nginx in podman);
- `host-nginx`: the host's /usr/sbin/nginx with the very same nginx.conf (the web recipe's),
  pointed at the same files: what the container costs.
Load: `ab` (apache2-utils), no keep-alive (a new connection per request, as the issue's
figures), GET /, DURATION seconds per run, at 10 and 50 clients. All servers run at once and
ROUNDS rounds alternate between them; figures are the median round: req/s, p50, p99.

Build times of the base images: cold (an empty download cache, --force), with a warm
download cache (--force), and cached (the recipe's tag exists: nothing to do).

Writes bench/results/serve.json and prints a Markdown table with `uptime`.
Run: .venv/bin/python bench/serve.py [--duration 10] [--images web,build] [--skip-serve]
Needs: podman, mmdebstrap, ab (apt-get install -y apache2-utils), nginx-light on the host,
node/npm with examples/webapp's node_modules, busybox-static (for the old image).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from conveyor.images.recipe import RECIPES, RECIPES_DIR  # noqa: E402
from conveyor.platform.containers_conf import write_containers_config  # noqa: E402
from conveyor.platform.daemon import free_port  # noqa: E402

OLD_REF = "b8b21cb"  # the last commit whose example image served through busybox nc
WEBAPP = ROOT / "examples" / "webapp"
CLIENTS = (10, 50)


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        sys.exit(f"serve bench: {' '.join(argv[:4])}... failed: {done.stderr[-2000:]}")
    return done  # type: ignore[no-any-return]


def ng_build(out: Path, env: dict[str, str]) -> Path:
    """The example's production build into `out` (the same files for every server)."""
    run(
        ["npx", "ng", "build", "--no-progress", "--output-path", str(out)],
        cwd=WEBAPP,
        env={**env, "NG_CLI_ANALYTICS": "false"},
        timeout=600,
    )
    return out / "browser"


def old_image(dist: Path, tmp: Path, env: dict[str, str]) -> str:
    """The example image of OLD_REF: FROM scratch, busybox nc + serve.sh."""
    ctx = tmp / "old"
    (ctx / "dist" / "webapp").mkdir(parents=True)
    tar = subprocess.run(
        ["git", "archive", "--format=tar", OLD_REF, "examples/webapp/docker"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "--strip-components=2", "-C", str(ctx)], input=tar, check=True)
    containerfile = run(["git", "show", f"{OLD_REF}:examples/webapp/Containerfile"], cwd=ROOT)
    (ctx / "Containerfile").write_text(containerfile.stdout)
    busybox = shutil.which("busybox")
    if busybox is None:
        sys.exit("serve bench: the old image needs busybox-static (apt-get install busybox-static)")
    shutil.copy(busybox, ctx / "docker" / "busybox")
    shutil.copytree(dist, ctx / "dist" / "webapp" / "browser")
    (ctx / "dist" / "webapp" / "browser" / "healthz.json").write_text(
        '{"status":"ok","version":"bench","commit":"bench"}\n'
    )
    tag = f"localhost/conveyor-bench/webapp-old:{uuid.uuid4().hex[:8]}"
    run(["podman", "build", "-q", "--timestamp", "0", "-t", tag, str(ctx)], env=env, timeout=600)
    return tag


def web_image(dist: Path, tmp: Path, env: dict[str, str]) -> str:
    """The example image now: its Containerfile FROM localhost/conveyor/web:latest."""
    ctx = tmp / "new"
    (ctx / "dist" / "webapp").mkdir(parents=True)
    shutil.copy(WEBAPP / "Containerfile", ctx / "Containerfile")
    shutil.copytree(dist, ctx / "dist" / "webapp" / "browser")
    tag = f"localhost/conveyor-bench/webapp-web:{uuid.uuid4().hex[:8]}"
    run(
        ["podman", "build", "-q", "--timestamp", "0", "--build-arg", "APP_VERSION=bench"]
        + ["-t", tag, str(ctx)],
        env=env,
        timeout=600,
    )
    return tag


def wait_ready(url: str) -> None:
    for _ in range(400):
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"serve bench: {url} never answered")


def ab(url: str, clients: int, duration: float) -> dict[str, float]:
    """req/s, p50 and p99 (ms) of `ab -t DURATION -c CLIENTS URL`."""
    done = run(
        ["ab", "-q", "-r", "-t", str(duration), "-n", "10000000", "-c", str(clients), url],
        timeout=duration + 120,
    )
    out = done.stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\d+)", out, re.M))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    failed += int(non_2xx.group(1)) if non_2xx else 0
    return {"rps": rps, "p50_ms": float(pct["50"]), "p99_ms": float(pct["99"]), "failed": failed}


def host_nginx(dist: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """/usr/sbin/nginx with the web recipe's nginx.conf, on the same files."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        sys.exit("serve bench: no host nginx (apt-get install -y nginx-light)")
    port = free_port()
    d = tmp / "host-nginx"
    (d / "web").mkdir(parents=True)
    (d / "web" / "healthz.json").write_text('{"status":"ok","version":"bench","commit":"bench"}\n')
    (d / "web" / "config.json").write_text('{"environment":"bench","banner":""}\n')
    conf = (RECIPES_DIR / "web" / "nginx.conf").read_text()
    conf = conf.replace("listen 8080", f"listen 127.0.0.1:{port}")
    conf = conf.replace("root /www;", f"root {dist};").replace(
        "root /tmp/web;", f"root {d / 'web'};"
    )
    conf = conf.replace("/tmp/nginx", str(d / "nginx"))
    conf = conf.replace("error_log /dev/stderr warn;", f"error_log {d / 'error.log'} warn;")
    conf = conf.replace("access_log /dev/stdout", f"access_log {d / 'access.log'}")
    (d / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(
        [nginx, "-e", str(d / "error.log"), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def serve(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> list[dict[str, object]]:
    """All servers up at once; each round measures every (server, clients) pair in turn, so
    drift in the machine's load falls on all of them alike. Rows: the median round by req/s."""
    dist = ng_build(tmp / "dist", env)
    images = {"old-busybox": old_image(dist, tmp, env), "web": web_image(dist, tmp, env)}
    urls: dict[str, str] = {}
    names: list[str] = []
    proc: subprocess.Popen[bytes] | None = None
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for server, image in images.items():
            port = free_port()
            names.append(f"conveyor-bench-{server}-{uuid.uuid4().hex[:6]}")
            run(
                ["podman", "run", "-d", "--name", names[-1], "-p", f"127.0.0.1:{port}:8080", image],
                env=env,
            )
            urls[server] = f"http://127.0.0.1:{port}/"
        proc, base = host_nginx(dist, tmp)
        urls["host-nginx"] = base + "/"
        for url in urls.values():
            wait_ready(url)
            ab(url, 10, 1)  # warm-up
        for r in range(args.rounds):
            for c in CLIENTS:
                for server, url in urls.items():
                    if server == "old-busybox" and r > 0:
                        continue  # 50x slower: one round tells
                    m = ab(url, c, args.duration)
                    samples.setdefault((server, c), []).append(m)
                    print({"round": r + 1, "server": server, "clients": c, **m}, file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        for name in names:
            subprocess.run(["podman", "rm", "-f", "-t", "0", name], env=env, capture_output=True)
        for image in images.values():
            subprocess.run(["podman", "rmi", "-f", image], env=env, capture_output=True)
    rows: list[dict[str, object]] = []
    for (server, c), ms in sorted(
        samples.items(), key=lambda kv: (kv[0][0] != "old-busybox", kv[0][0], kv[0][1])
    ):
        median = sorted(ms, key=lambda m: m["rps"])[len(ms) // 2]
        rows.append(
            {
                "server": server,
                "clients": c,
                "rounds": len(ms),
                **median,
                "rps_all": [m["rps"] for m in ms],
            }
        )
    return rows


def conveyor_images_build(name: str, env: dict[str, str], *extra: str) -> dict[str, object]:
    started = time.monotonic()
    done = run(
        [sys.executable, "-m", "conveyor", "images", "build", name, "--json", *extra],
        env=env,
        timeout=3600,
    )
    result: dict[str, object] = json.loads(done.stdout)["images"][0]
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def build_times(names: list[str], env: dict[str, str], tmp: Path) -> list[dict[str, object]]:
    rows = []
    for name in names:
        cold_env = {**env, "CONVEYOR_IMAGES_APT_CACHE": str(tmp / f"apt-cold-{name}")}
        for label, e, extra in (
            ("cold (empty download cache)", cold_env, ("--force",)),
            ("warm download cache", env, ("--force",)),
            ("cached (tag exists)", env, ()),
        ):
            r = conveyor_images_build(name, e, *extra)
            rows.append({"image": name, "run": label, **r})
            print(rows[-1], file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--images", default="web", help="base images to time (web,build)")
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    args = parser.parse_args()
    if shutil.which("ab") is None:
        sys.exit("serve bench: needs ab (apt-get install -y apache2-utils)")
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-serve-"))
    tmp.chmod(0o755)  # host nginx's workers run as nobody and must read the files
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CONVEYOR_HOME": str(tmp / "state")}
    env.update(write_containers_config(tmp / "state" / "containers", []))
    load_before = run(["uptime"]).stdout.strip()
    builds = (
        []
        if args.skip_build
        else build_times([n for n in args.images.split(",") if n in RECIPES], env, tmp)
    )
    rows = [] if args.skip_serve else serve(args, env, tmp)
    load_after = run(["uptime"]).stdout.strip()
    out = {
        "uptime_before": load_before,
        "uptime_after": load_after,
        "serve": rows,
        "builds": builds,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "serve.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"machine: {os.cpu_count()} cores; before: {load_before}; after: {load_after}")
    if rows:
        host = {r["clients"]: r["rps"] for r in rows if r["server"] == "host-nginx"}
        print("\n| server | clients | req/s | × host nginx | p50 ms | p99 ms | failed |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            ratio = float(r["rps"]) / float(host[r["clients"]]) if host.get(r["clients"]) else 0.0  # type: ignore[arg-type]
            print(
                f"| {r['server']} | {r['clients']} | {float(r['rps']):,.0f} | {ratio:.2f} | "  # type: ignore[arg-type]
                f"{r['p50_ms']:g} | {r['p99_ms']:g} | {r['failed']} |"
            )
    if builds:
        print("\n| image | run | seconds | size MB |")
        print("|---|---|---|---|")
        for b in builds:
            size = f"{int(b['size']) / 1e6:.1f}" if b.get("size") else "?"  # type: ignore[call-overload]
            print(f"| {b['image']} | {b['run']} | {b['wall_s']} | {size} |")


if __name__ == "__main__":
    main()
