"""`source.s3`: CodePipeline's S3 source, run locally from a directory or an S3-compatible URL.

    - name: Source
      type: source.s3
      outputs: [src]
      config: {bucket: my-bucket, key: app.zip}

Where the object comes from, the first that applies:

1. `config.path`: a local directory, or a .zip file;
2. `config.endpoint` or `CONVEYOR_S3_ENDPOINT`: an S3-compatible server (MinIO, moto, a real
   S3 region's URL); credentials from the usual AWS variables;
3. `<state dir>/s3/<bucket>/<key>`: a directory, or a .zip file (a local "bucket").

A .zip is extracted into the output artifact (as CodePipeline does); a directory is copied.
Output variables: ETag (a content digest locally) and ObjectKey.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path
from typing import ClassVar

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.errors import ActionError, Unavailable


class S3SourceConfig(ActionConfig):
    bucket: str
    key: str
    path: str | None = None
    endpoint: str | None = None


class S3Source(BaseAction):
    type_name = "source.s3"
    Config = S3SourceConfig
    output_variables: ClassVar[frozenset[str] | None] = frozenset({"ETag", "ObjectKey"})

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = S3SourceConfig.model_validate(dict(ctx.config))
        endpoint = cfg.endpoint or os.environ.get("CONVEYOR_S3_ENDPOINT")
        local = ctx.state_dir / "s3" / cfg.bucket / cfg.key
        if cfg.path:
            origin, where = Path(cfg.path).expanduser(), f"config.path {cfg.path}"
            if not origin.exists():
                raise ActionError(f"S3 source: {where} does not exist")
        elif endpoint:
            origin = _download(cfg.bucket, cfg.key, endpoint, ctx.workdir / "download")
            where = f"s3://{cfg.bucket}/{cfg.key} at {endpoint}"
        elif local.exists():
            origin, where = local, str(local)
        else:
            raise ActionError(
                f"S3 source s3://{cfg.bucket}/{cfg.key}: not found at {local} (a directory or "
                "a .zip), and no S3 endpoint is set: put the files there, set config.path, or "
                "set config.endpoint (or CONVEYOR_S3_ENDPOINT) to an S3-compatible URL"
            )
        digest = hashlib.sha256()
        n = 0
        for out in ctx.outputs.values():
            n = _unpack(origin, out, digest)
        ctx.log.write(f"S3 source: {n} file(s) from {where}\n")
        variables = {"ETag": digest.hexdigest()[:32], "ObjectKey": cfg.key}
        return ActionResult(
            variables=variables,
            revision=dict(variables),
            details={"revision": {"bucket": cfg.bucket, "key": cfg.key, "from": where}},
        )


def _download(bucket: str, key: str, endpoint: str, dest: Path) -> Path:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        raise Unavailable("S3 source: boto3 is not installed") from None
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / (Path(key).name or "object")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
    try:
        client.download_file(bucket, key, str(target))
    except ClientError as e:
        raise ActionError(
            f"S3 source: cannot get s3://{bucket}/{key} from {endpoint}: "
            f"{e.response.get('Error', {}).get('Message') or e}"
        ) from None
    except BotoCoreError as e:
        raise ActionError(f"S3 source: {endpoint} does not answer: {e}") from None
    return target


def _unpack(origin: Path, out: Path, digest: hashlib._Hash) -> int:
    """Copy a directory or extract a zip into `out`; the number of files."""
    n = 0
    if origin.is_dir():
        for f in sorted(p for p in origin.rglob("*") if p.is_file()):
            rel = f.relative_to(origin)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out / rel)
            digest.update(str(rel).encode() + b"\0" + f.read_bytes())
            n += 1
        return n
    data = origin.read_bytes()
    digest.update(data)
    if zipfile.is_zipfile(origin):
        with zipfile.ZipFile(origin) as z:
            root = out.resolve()
            for info in z.infolist():
                target = (out / info.filename).resolve()
                if not target.is_relative_to(root):
                    raise ActionError(f"S3 source: {origin} holds a path outside the artifact")
                if not info.is_dir():
                    n += 1
            z.extractall(out)
        return n
    shutil.copy2(origin, out / origin.name)  # a single object that is not a zip
    return 1
