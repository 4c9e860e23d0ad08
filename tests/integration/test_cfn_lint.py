"""cfn-lint (the real linter, with CloudFormation's resource schemas) on synthesized templates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.aws.synth import synthesize
from conveyor.aws.template import render
from conveyor.errors import ValidationFailed
from conveyor.spec.codepipeline import load_codepipeline
from conveyor.spec.pipeline_file import load_pipeline
from tests.conftest import CORPUS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PIPELINES = CORPUS / "pipelines"
EXAMPLE = REPO / "examples" / "pipeline.yaml"
FIXTURE = REPO / "tests" / "unit" / "data" / "seed_eks.yaml"


CFN_LINT = (
    str(Path(sys.executable).parent / "cfn-lint")
    if (Path(sys.executable).parent / "cfn-lint").exists()
    else shutil.which("cfn-lint")
)


def _lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    if CFN_LINT is None:
        pytest.fail("cfn-lint is not installed: `pip install -e .[dev]` (make test does it)")
    return subprocess.run(
        [CFN_LINT, "--format", "parseable", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _importable() -> list[Path]:
    out = []
    for p in sorted(PIPELINES.glob("*")):
        if p.name == "README.md":
            continue
        try:
            load_codepipeline(p)
        except ValidationFailed:
            continue
        out.append(p)
    return out


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_seed_template_is_lint_clean(tmp_path: Path, fmt: str) -> None:
    """The seed's template (EKS environments, monitor) has no cfn-lint error and no warning."""
    out = tmp_path / f"seed.{fmt}"
    out.write_text(render(synthesize(load_pipeline(FIXTURE)).template, fmt))
    r = _lint(out)
    assert (r.returncode, r.stdout) == (0, "")


def test_example_pipeline_template_is_lint_clean(tmp_path: Path) -> None:
    """examples/pipeline.yaml (environments mapped to EKS) gives a lint-clean template."""
    if not EXAMPLE.exists():
        pytest.skip("examples/pipeline.yaml is not written yet")
    p = load_pipeline(EXAMPLE)
    targets = {name: "eks" for name, e in p.environments.items() if e.driver != "eks"}
    out = tmp_path / "example.yaml"
    out.write_text(render(synthesize(p, targets).template))
    r = _lint(out)
    assert (r.returncode, r.stdout) == (0, "")


def test_lint_catches_a_bad_property(tmp_path: Path) -> None:
    """The lint run is real: an unknown resource property is reported."""
    t = synthesize(load_pipeline(FIXTURE)).template
    t["Resources"]["TestRepository"]["Properties"]["ScanOnPush"] = True
    out = tmp_path / "bad.yaml"
    out.write_text(render(t))
    r = _lint(out)
    assert r.returncode != 0 and "E3002" in r.stdout


@pytest.mark.corpus
def test_every_importable_corpus_pipeline_synthesizes_lint_clean(tmp_path: Path) -> None:
    """Each importable corpus pipeline, imported then synthesized, gives a lint-clean template."""
    files = _importable()
    assert len(files) == 5
    outs = []
    for f in files:
        out = tmp_path / f"{f.stem}.yaml"
        out.write_text(render(synthesize(load_codepipeline(f).pipeline).template))
        outs.append(out)
    r = _lint(*outs)
    assert (r.returncode, r.stdout) == (0, "")


def test_native_eks_deploy_template_is_lint_clean(tmp_path: Path) -> None:
    """--eks-deploy native (Deploy/AWS/EKS/1 and the pipeline role's access entry) lints clean."""
    from tests.unit.test_aws_synth import NATIVE

    src = tmp_path / "native.yaml"
    src.write_text(NATIVE)
    out = tmp_path / "native-template.yaml"
    out.write_text(render(synthesize(load_pipeline(src), eks_deploy="native").template))
    r = _lint(out)
    assert (r.returncode, r.stdout) == (0, "")
