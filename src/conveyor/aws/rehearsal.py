"""`conveyor aws rehearse`: run the synthesized AWS pipeline's buildspecs here, in order.

What CodeBuild would run, this runs with Conveyor's own buildspec runner, on the real
application: the template is synthesized, then each stage's actions run in runOrder. Source
actions copy the source directories (the files git tracks), CodeBuild actions run their
buildspec (the application's, the Selenium suite's, or the generated ones inline in the
template) with the project's environment variables and the action's, `#{NS.Var}` resolved
from earlier actions' exported variables, as CodePipeline does. Approvals are approved.

`aws`, `kubectl` and `crane` are recording fakes first on PATH (conveyor.aws.rehearsal_fakes):
ECR is the local test/prod registries, each EKS namespace a local podman environment on a
free port. What differs from CodeBuild is printed as a substitution: podman builds instead of
docker, the image's tool paths mapped to this machine's, this machine's Python for the suite.

Then it checks the data flow (ImageURI/ImageDigest exported, the test URL non-empty and
reached by the Selenium suite, manifests pinned by digest, the promote copying the tested
digest, prod probed by the monitor, the approval's CustomData carrying the digest) and prints
every recorded fake call.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.aws import images
from conveyor.aws.rehearsal_fakes import ACCOUNT, REGION, STATE_ENV
from conveyor.aws.synth import logical_id, synthesize
from conveyor.errors import ConfigError
from conveyor.model.pipeline import Environment, Pipeline

Say = Callable[[str], None]
FAKES = ("aws", "kubectl", "crane")
VAR = re.compile(r"#\{([A-Za-z0-9_@\-]+)\.([A-Za-z0-9_@\-]+)\}")
_SKIP = {"node_modules", ".venv", "dist", "reports", ".angular", "__pycache__", ".pytest_cache"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Step:
    stage: str
    action: str
    kind: str
    succeeded: bool
    message: str = ""
    exported: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    reports: list[Any] = field(default_factory=list)


@dataclass
class Rehearsal:
    steps: list[Step] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return all(s.succeeded for s in self.steps) and all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        """What `conveyor aws rehearse --json` prints."""
        return {
            "succeeded": self.succeeded,
            "steps": [
                {
                    "stage": s.stage,
                    "action": s.action,
                    "succeeded": s.succeeded,
                    "message": s.message,
                    "exported": s.exported,
                }
                for s in self.steps
            ],
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "calls": self.calls,
            "substitutions": self.substitutions,
        }


def default_targets(p: Pipeline) -> dict[str, str]:
    """Every environment AWS cannot run as is goes to EKS (what `--target-env ENV=eks` says)."""
    return {name: "eks" for name, e in p.environments.items() if e.driver != "eks"}


# ------------------------------------------------------------------------------ template values


class _Values:
    """Resolves the template's intrinsics to the rehearsal's values (ECR = local registries)."""

    def __init__(self, template: dict[str, Any], repo_uris: Mapping[str, str]) -> None:
        self.t = template
        self.params = {k: v.get("Default", "") for k, v in template.get("Parameters", {}).items()}
        self.repo_uris = dict(repo_uris)  # repository logical id -> local URI

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Partition": "aws",
            "AWS::StackName": "conveyor-rehearsal",
        }.get(name)

    def ref(self, name: str) -> str:
        p = self.pseudo(name)
        if p is not None:
            return p
        if name in self.params:
            return str(self.params[name])
        res = self.t["Resources"].get(name, {})
        kind, props = res.get("Type", ""), res.get("Properties", {})
        if kind == "AWS::ECR::Repository":
            return str(self.resolve(props.get("RepositoryName")))
        if kind == "AWS::CodeBuild::Project":
            return str(self.resolve(props.get("Name")))
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
        return name

    def getatt(self, name: str, attr: str) -> str:
        if attr == "RepositoryUri" and name in self.repo_uris:
            return self.repo_uris[name]
        return f"arn:aws:rehearsal:{REGION}:{ACCOUNT}:{name}/{attr}"

    def condition(self, name: str) -> bool:
        return bool(self._cond(self.t.get("Conditions", {}).get(name)))

    def _cond(self, c: Any) -> Any:
        if isinstance(c, dict) and "Fn::Not" in c:
            return not self._cond(c["Fn::Not"][0])
        if isinstance(c, dict) and "Fn::Equals" in c:
            a, b = c["Fn::Equals"]
            return self.resolve(a) == self.resolve(b)
        if isinstance(c, dict) and "Condition" in c:
            return self.condition(c["Condition"])
        return self.resolve(c)

    def resolve(self, v: Any) -> Any:
        if isinstance(v, list):
            out = [self.resolve(x) for x in v]
            return [x for x in out if x is not _NOVALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            ((k, x),) = v.items()
            if k == "Ref":
                return _NOVALUE if x == "AWS::NoValue" else self.ref(x)
            if k == "Fn::GetAtt":
                name, attr = x if isinstance(x, list) else x.split(".", 1)
                return self.getatt(name, attr)
            if k == "Fn::Sub":
                text = x if isinstance(x, str) else x[0]
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1)), text)
            if k == "Fn::If":
                cond, yes, no = x
                return self.resolve(yes if self.condition(cond) else no)
            if k == "Fn::Join":
                sep, parts = x
                return sep.join(str(p) for p in self.resolve(parts))
        return {k: self.resolve(x) for k, x in v.items()}

    def _sub(self, expr: str) -> str:
        if "." in expr and not expr.startswith("AWS::"):
            name, attr = expr.split(".", 1)
            return self.getatt(name, attr)
        return self.ref(expr)


_NOVALUE: Any = object()


# ------------------------------------------------------------------------------ the run


class _Run:
    def __init__(self, pipeline_file: Path, workdir: Path, say: Say, keep: bool) -> None:
        from conveyor.spec.pipeline_file import load_pipeline

        self.file = pipeline_file
        self.pipeline = load_pipeline(pipeline_file)
        self.workdir = workdir
        self.say = say
        self.keep = keep
        self.result = Rehearsal()
        self.vars: dict[str, dict[str, str]] = {}
        self.artifacts: dict[str, Path] = {}
        self.platform: Any = None
        self.envs: list[Any] = []
        self.sources: dict[str, Path] = {}
        self.base_images: dict[str, str] = {}  # base repository logical id -> pushed image

    # -- set-up

    def synthesize(self, targets: Mapping[str, str]) -> dict[str, Any]:
        synthesis = synthesize(self.pipeline, targets)
        self.template = synthesis.template
        return self.template

    def start_platform(self) -> None:
        from conveyor.platform.daemon import free_port
        from conveyor.platform.local import LocalPlatform
        from conveyor.settings import Settings

        state_dir = self.workdir / "state"
        settings = Settings(state_dir=state_dir, database_url="sqlite://")
        ports = {"test": free_port(), "prod": free_port()}
        self.platform = LocalPlatform(settings, registry_ports=ports)
        self.platform.up()
        self.say(
            f"local platform: registries test on 127.0.0.1:{ports['test']}, prod on 127.0.0.1:{ports['prod']}"
        )
        # ECR repositories -> the local registry of their environment
        repo_uris: dict[str, str] = {}
        repositories: dict[str, str] = {}
        values = _Values(self.template, {})
        namespaces: dict[str, dict[str, Any]] = {}
        token = os.urandom(2).hex()
        for name, e in self.pipeline.environments.items():
            lid = logical_id(name) + "Repository"
            host = self.platform.environment_registry(e)
            if lid in self.template["Resources"]:
                repo = values.ref(lid)
                repo_uris[lid] = f"{host}/{repo}"
                repositories[repo] = host
            ns_param = f"{logical_id(name)}Namespace"
            if ns_param in values.params:
                local = Environment(
                    f"rh{token}-{name}",
                    registry=e.registry or name,
                    port=free_port(),
                    settings={"drainSeconds": 1},
                )
                self.envs.append(local)
                namespaces[str(values.params[ns_param])] = {
                    "local": local.name,
                    "registry": local.registry,
                    "port": local.port,
                    "environment": name,
                }
                self.say(
                    f"namespace {values.params[ns_param]} (environment '{name}') -> local podman "
                    f"environment {local.name} on http://127.0.0.1:{local.port}"
                )
        self.base_images = self._base_repositories(repo_uris, values)
        self.values = _Values(self.template, repo_uris)
        self.namespaces = namespaces
        calls = self.workdir / "fake-calls.jsonl"
        state: dict[str, Any] = {
            "calls": str(calls),
            "state_dir": str(state_dir),
            "registry_ports": ports,
            "repositories": repositories,
            "namespaces": namespaces,
            "applied_dir": str(self.workdir / "applied"),
        }
        self.state_file = self.workdir / "rehearsal.json"
        self.state_file.write_text(json.dumps(state, indent=2))
        calls.write_text("")
        bindir = self.workdir / "fakes"
        bindir.mkdir(parents=True, exist_ok=True)
        for tool in FAKES:
            exe = bindir / tool
            exe.write_text(
                "#!/bin/sh\n# rehearsal FAKE of the real CLI: records the call, answers from the "
                f'local platform\nexec {sys.executable} -m conveyor.aws.rehearsal_fakes {tool} "$@"\n'
            )
            exe.chmod(0o755)
        self.bindir = bindir
        self.result.substitutions.append(
            f"aws, kubectl and crane are recording fakes ({bindir}), first on PATH"
        )

    def _base_repositories(self, repo_uris: dict[str, str], values: _Values) -> dict[str, str]:
        """Each base image's ECR repository -> the first environment's local registry, filled
        as the operator would: `conveyor images push NAME --to URI` (real skopeo, real image)."""
        from conveyor.images.push import push_image
        from conveyor.images.recipe import lookup

        pushed: dict[str, str] = {}
        first = next(iter(self.pipeline.environments.values()), None)
        for lid, res in self.template["Resources"].items():
            base = res.get("Metadata", {}).get("Conveyor", {}).get("baseImage")
            if not base or first is None:
                continue
            uri = f"{self.platform.environment_registry(first)}/{values.ref(lid)}"
            repo_uris[lid] = uri
            done = push_image(lookup(base), uri, self.platform.container_env())
            pushed[lid] = done.destination
            self.result.substitutions.append(
                f"{lid} (ECR) -> {uri}; `conveyor images push {base} --to` it: {done.digest}"
            )
            self.say(f"base image {done.source} pushed to {done.destination} ({done.digest})")
        return pushed

    def stop(self) -> None:
        applied = self.workdir / "applied"
        for pidfile in applied.glob("port-forward-*.pid") if applied.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
        if self.platform is None or self.keep:
            return
        from conveyor.platform.environment import PodmanEnvironment

        for e in self.envs:
            try:
                PodmanEnvironment(self.platform, e).remove()
            except Exception as exc:  # cleanup is best effort; say what was left
                self.say(f"warning: could not remove local environment {e.name}: {exc}")
        self.platform.down()

    # -- variables

    def expand(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            ns, name = m.group(1), m.group(2)
            if ns == "variables":
                for v in self.pipeline.variables:
                    if v.name == name:
                        return str(v.default or "")
                return ""
            if ns == "codepipeline" and name == "PipelineExecutionId":
                return "rehearsal-0001"
            value = self.vars.get(ns, {}).get(name)
            if value is None:
                raise ConfigError(
                    f"#{{{ns}.{name}}} is not set by any earlier action (CodePipeline fails the action)"
                )
            return value

        return VAR.sub(one, text)

    # -- actions

    def run(self) -> None:
        stages = self.template["Resources"]["Pipeline"]["Properties"]["Stages"]
        for stage in stages:
            for decl in sorted(stage["Actions"], key=lambda a: a.get("RunOrder", 1)):
                step = self.action(stage["Name"], decl)
                self.result.steps.append(step)
                self.say(
                    f"{stage['Name']}/{decl['Name']}: {'Succeeded' if step.succeeded else 'FAILED'}"
                    + (f": {step.message}" if step.message else "")
                )
                if not step.succeeded:
                    return
            for cond in (stage.get("OnSuccess") or {}).get("Conditions", []):
                for rule in cond.get("Rules", []):
                    self.say(
                        f"{stage['Name']}: condition {rule['Name']} ({rule['RuleTypeId']['Provider']}, "
                        f"result {cond.get('Result')}): not rehearsed (CloudWatch has no local form)"
                    )

    def action(self, stage: str, decl: dict[str, Any]) -> Step:
        tid = decl["ActionTypeId"]
        cfg = self.values.resolve(decl.get("Configuration", {}))
        name = decl["Name"]
        if tid["Category"] == "Source":
            return self.source(stage, decl, cfg)
        if tid["Category"] == "Approval":
            data = self.expand(str(cfg.get("CustomData", "")))
            step = Step(stage, name, "approval", True, "approved by the rehearsal")
            step.env = {"CustomData": data, "NotificationArn": str(cfg.get("NotificationArn", ""))}
            self.say(f"{stage}/{name}: CustomData: {data}")
            return step
        if tid["Provider"] == "CodeBuild":
            return self.codebuild(stage, decl, cfg)
        return Step(
            stage, name, tid["Provider"], False, f"provider {tid['Provider']} has no rehearsal"
        )

    def source(self, stage: str, decl: dict[str, Any], cfg: dict[str, Any]) -> Step:
        repo = str(cfg.get("RepositoryName") or cfg.get("FullRepositoryId", "")).split("/")[-1]
        src = self.sources.get(repo) or (self.file.parent / repo)
        if not src.is_dir():
            return Step(
                stage,
                decl["Name"],
                "source",
                False,
                f"no directory for repository '{repo}' ({src}): pass --source {repo}=DIR",
            )
        out = decl.get("OutputArtifacts", [{}])[0].get("Name", decl["Name"])
        dest = self.workdir / "artifacts" / out
        _copy_source(src, dest)
        self.artifacts[out] = dest
        commit = _commit(src)
        exported = {
            "CommitId": commit,
            "BranchName": str(cfg.get("BranchName", "main")),
            "RepositoryName": repo,
            "CommitMessage": "rehearsal",
            "AuthorDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if decl.get("Namespace"):
            self.vars[decl["Namespace"]] = exported
        return Step(stage, decl["Name"], "source", True, f"{src} at {commit[:12]}", exported)

    def codebuild(self, stage: str, decl: dict[str, Any], cfg: dict[str, Any]) -> Step:
        from conveyor.buildspec.run import run_buildspec
        from conveyor.buildspec.spec import find_buildspec, load_buildspec, parse_buildspec

        name = decl["Name"]
        project_id = decl["Configuration"]["ProjectName"]["Ref"]
        project = self.template["Resources"][project_id]["Properties"]
        image_name = str(self.values.resolve(project["Environment"].get("Image", "")))
        image = images.IMAGES.get(image_name, images.DEFAULT)
        inputs = [a["Name"] for a in decl.get("InputArtifacts", [])]
        missing = [a for a in inputs if a not in self.artifacts]
        if not inputs or missing:
            return Step(
                stage,
                name,
                "codebuild",
                False,
                f"input artifacts {missing or '(none)'} not available: CodeBuild actions need 1-5 input artifacts",
            )
        sources = {a: self.artifacts[a] for a in inputs}
        env: dict[str, str] = {}
        for v in self.values.resolve(project["Environment"].get("EnvironmentVariables", [])):
            env[v["Name"]] = str(v["Value"])
        for v in json.loads(self.expand(str(cfg.get("EnvironmentVariables", "[]")))):
            env[v["name"]] = str(v["value"])
        env = self.substitute(name, env, image)
        spec_text = str(project["Source"].get("BuildSpec") or "buildspec.yml")
        if "\n" in spec_text:
            spec = parse_buildspec(spec_text, f"{project_id} (inline, generated)")
        else:
            spec = load_buildspec(find_buildspec(sources[inputs[0]], spec_text))
        out_dirs = {}
        outputs = [a["Name"] for a in decl.get("OutputArtifacts", [])]
        if outputs:
            out_dirs["primary"] = self.workdir / "artifacts" / outputs[0]
        minutes = int(project.get("TimeoutInMinutes", 60))
        build_dir = self.workdir / "builds" / name
        log_path = self.workdir / "builds" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w", encoding="utf-8") as log:

            def write(text: str) -> None:
                log.write(text)
                log.flush()

            result = run_buildspec(
                spec,
                sources,
                env,
                build_dir,
                write,
                None,
                time.monotonic() + minutes * 60,
                artifact_dirs=out_dirs,
                project=str(self.values.resolve(project["Name"])),
                resolved_source_version=self.vars.get("SourceApp", {}).get("CommitId", ""),
            )
        for o in outputs:
            self.artifacts[o] = out_dirs["primary"]
        if decl.get("Namespace"):
            self.vars[decl["Namespace"]] = dict(result.exported)
        message = "" if result.succeeded else f"{result.message} (log: {log_path})"
        if not result.succeeded:
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            self.say("\n".join(f"    | {line}" for line in tail))
        return Step(
            stage,
            name,
            "codebuild",
            result.succeeded,
            message,
            dict(result.exported),
            env,
            list(result.reports),
        )

    def substitute(
        self, action: str, env: dict[str, str], image: images.CodeBuildImage
    ) -> dict[str, str]:
        """What differs between CodeBuild's image and this machine, each change printed."""
        notes = []
        out = dict(env)
        if out.get("CONTAINER_RUNTIME") == "docker":
            out["CONTAINER_RUNTIME"] = "podman"
            out.update(self.platform.container_env())
            notes.append("CONTAINER_RUNTIME=docker -> podman (no docker daemon here)")
        for var, default in images.SUITE_BROWSER_DEFAULTS.items():
            # a project that runs the browser suite (it reads the app's URL)
            if "BASE_URL" in out and var not in out and default not in image.ships:
                out[var] = f"/absent-on-{image.name.replace('/', '_').replace(':', '_')}{default}"
                notes.append(f"{var} unset: the suite's default {default} is not on {image.name}")
        for k, v in list(out.items()):
            if v in images.LOCAL_EQUIVALENTS:
                out[k] = images.LOCAL_EQUIVALENTS[v]
                notes.append(f"{k}={v} (on {image.name}) -> {out[k]} here")
        out.setdefault("PYTHON", sys.executable)
        out["PATH"] = f"{self.bindir}:{os.environ.get('PATH', '')}"
        out[STATE_ENV] = str(self.state_file)
        out.setdefault("AWS_DEFAULT_REGION", REGION)
        out.setdefault("AWS_REGION", REGION)
        out["SE_OFFLINE"] = "true"
        for n in notes:
            self.result.substitutions.append(f"{action}: {n}")
            self.say(f"  substitution for {action}: {n}")
        return out

    # -- checks

    def calls(self) -> list[dict[str, Any]]:
        path = self.workdir / "fake-calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def check(self) -> None:
        digest = self._check_build()
        deploys = self._check_deploys(digest)
        self._check_tests(deploys)
        self._check_promotes(digest)
        self._check_monitors(deploys)
        self._check_approvals(digest)

    def _check_build(self) -> str:
        """The build exports the image it pushed; its digest (empty: none)."""
        add = self.result.checks.append
        builds = [
            s
            for s in self.result.steps
            if s.exported.get("ImageDigest") and s.env.get("REPOSITORY_URI")
        ]
        build = builds[0] if builds else None
        digest = build.exported.get("ImageDigest", "") if build else ""
        uri = build.exported.get("ImageURI", "") if build else ""
        add(
            Check(
                "the build exports ImageURI and ImageDigest",
                bool(digest and uri.endswith("@" + digest)),
                f"ImageURI={uri or '(empty)'} ImageDigest={digest or '(empty)'}",
            )
        )
        for base in self.base_images.values():
            # podman had to pull it: the pushed name exists only in the registry
            used = [s for s in self.result.steps if s.env.get("BASE_IMAGE") == base]
            add(
                Check(
                    "the image builds FROM the base image's ECR copy (BASE_IMAGE)",
                    bool(used) and all(s.succeeded for s in used),
                    f"BASE_IMAGE={base} in {', '.join(s.action for s in used) or 'no build'}",
                )
            )
        return digest

    def _check_deploys(self, digest: str) -> list[Step]:
        """Each deploy exports its URL and applies manifests pinned to the tested digest."""
        add = self.result.checks.append
        deploys = [
            s for s in self.result.steps if "K8S_NAMESPACE" in s.env and "MANIFESTS" in s.env
        ]
        applied_dir = self.workdir / "applied"
        for d in deploys:
            url = d.exported.get("URL", "")
            ns = d.env["K8S_NAMESPACE"]
            add(Check(f"{d.action} exports a non-empty URL", bool(url), f"URL={url or '(empty)'}"))
            manifest = applied_dir / f"{ns}.yaml"
            text = manifest.read_text() if manifest.exists() else ""
            image = d.exported.get("ImageURI", "")
            pinned = bool(image) and "@sha256:" in image and f"image: {image}" in text
            add(
                Check(
                    f"{d.action} applies manifests pinned by digest to the tested image",
                    pinned and bool(digest) and image.endswith("@" + digest),
                    f"namespace {ns}: image {image or '(none applied)'}",
                )
            )
        return deploys

    def _check_tests(self, deploys: list[Step]) -> None:
        """The Selenium suite reaches the test URL and passes."""
        add = self.result.checks.append
        for s in self.result.steps:
            readers = [k for k, v in s.env.items() if k == "BASE_URL"]
            if s.kind == "codebuild" and readers and s.action not in [d.action for d in deploys]:
                passed = sum(getattr(r, "passed", 0) for r in s.reports)
                add(
                    Check(
                        f"{s.action} (the Selenium suite) reaches the test URL",
                        s.succeeded and passed > 0,
                        f"BASE_URL={s.env.get('BASE_URL') or '(empty)'}; {passed} test(s) passed",
                    )
                )

    def _check_promotes(self, digest: str) -> None:
        """Each promotion copies exactly the tested digest."""
        add = self.result.checks.append
        copies = [c for c in self.calls() if c["tool"] == "crane" and c["argv"][:1] == ["copy"]]
        promotes = [s for s in self.result.steps if "TARGET_REPOSITORY_URI" in s.env]
        for p in promotes:
            copied = [c["argv"][1] for c in copies]
            add(
                Check(
                    f"{p.action} copies exactly the tested digest",
                    bool(digest)
                    and any(src.endswith("@" + digest) for src in copied)
                    and p.exported.get("ImageDigest") == digest,
                    f"crane copy sources: {copied or '(none)'}; exported ImageDigest={p.exported.get('ImageDigest', '(none)')}",
                )
            )

    def _check_monitors(self, deploys: list[Step]) -> None:
        """Each monitor probes the URL of the deploy of its environment."""
        add = self.result.checks.append
        forwards = [
            c
            for c in self.calls()
            if c["tool"] == "kubectl" and c["argv"][:1] == ["port-forward"] and c.get("note")
        ]
        deploy_urls = {d.exported.get("URL", ""): d for d in deploys}
        for _, a in self.pipeline.all_actions():
            if a.type != "monitor":
                continue
            step = next((x for x in self.result.steps if x.action == a.name), None)
            url = step.env.get("URL", "") if step else ""
            target = deploy_urls.get(url) if url else None
            ns = target.env["K8S_NAMESPACE"] if target else ""
            forwarded = any(ns and ns in c["argv"] for c in forwards)
            add(
                Check(
                    f"monitor {a.name} probes the prod URL",
                    bool(
                        step
                        and step.succeeded
                        and target
                        and (forwarded or "svc.cluster" not in url)
                    ),
                    f"{a.name}: URL={url or '(none)'} (from {target.action if target else 'no deploy'}); "
                    f"port-forward to {ns or '-'}: {'yes' if forwarded else 'no'}"
                    if step
                    else "no CodeBuild action probes the environment (on AWS the monitor is only a "
                    "CloudWatch alarm)",
                )
            )

    def _check_approvals(self, digest: str) -> None:
        """Each approval's CustomData carries the digest."""
        add = self.result.checks.append
        for s in self.result.steps:
            if s.kind == "approval":
                data = s.env.get("CustomData", "")
                add(
                    Check(
                        f"approval {s.action}'s CustomData carries the digest",
                        bool(digest) and digest in data,
                        data,
                    )
                )


def _copy_source(src: Path, dest: Path) -> None:
    """The files git tracks in `src` (what a source action would fetch), else all but caches."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    r = subprocess.run(
        [
            "git",
            "-C",
            str(src),
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            ".",
        ],
        capture_output=True,
        check=False,
    )
    if r.returncode == 0 and r.stdout:
        for rel in r.stdout.decode().split("\0"):
            if not rel:
                continue
            f = src / rel
            if f.is_symlink() or not f.is_file() or _SKIP & set(Path(rel).parts):
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / rel)
        return
    shutil.copytree(
        src, dest, dirs_exist_ok=True, symlinks=True, ignore=shutil.ignore_patterns(*_SKIP)
    )


def _commit(src: Path) -> str:
    r = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "0" * 40


def rehearse(
    pipeline_file: Path,
    workdir: Path,
    *,
    targets: Mapping[str, str] | None = None,
    sources: Mapping[str, Path] | None = None,
    say: Say = print,
    keep: bool = False,
) -> Rehearsal:
    """Synthesize, run every generated buildspec in pipeline order against fakes, check."""
    workdir.mkdir(parents=True, exist_ok=True)
    run = _Run(pipeline_file, workdir, say, keep)
    run.sources = {k: Path(v) for k, v in (sources or {}).items()}
    run.synthesize(targets if targets else default_targets(run.pipeline))
    try:
        run.start_platform()
        run.run()
    finally:
        run.result.calls = run.calls()
        run.stop()
    run.check()
    return run.result


def render(result: Rehearsal) -> list[str]:
    """The report: substitutions, every recorded fake call, the checks."""
    lines = ["", "Substitutions (what differs from CodeBuild):"]
    lines += [f"  {s}" for s in result.substitutions]
    lines += ["", f"Recorded fake calls ({len(result.calls)}):"]
    for c in result.calls:
        argv = " ".join(_quote(a) for a in c["argv"])
        note = f"   # {c['note']}" if c.get("note") else ""
        lines.append(f"  {c['tool']} {argv}  -> exit {c['rc']}{note}")
    lines += ["", "Checks:"]
    for ch in result.checks:
        lines.append(f"  [{'ok' if ch.ok else 'FAIL'}] {ch.name}: {ch.detail}")
    failed = [s for s in result.steps if not s.succeeded]
    lines.append("")
    if result.succeeded:
        lines.append("rehearsal passed")
    else:
        what = [f"action {s.stage}/{s.action} failed" for s in failed] + [
            f"check '{c.name}' failed" for c in result.checks if not c.ok
        ]
        lines.append("rehearsal FAILED: " + "; ".join(what))
    return lines


def _quote(a: str) -> str:
    return a if re.fullmatch(r"[A-Za-z0-9_@%+=:,./\-]+", a) else json.dumps(a)
