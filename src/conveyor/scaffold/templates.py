"""The files `conveyor init --app` writes, fitted to a detected app and end-to-end suite.

Each function returns a file's text. The names in them come from `detect` (already reduced to
`[a-z0-9-]`); the output directory is checked to be a plain relative path before it is
written into a Containerfile.

The publish contract the files follow: the `build` action sets REPOSITORY_URI and IMAGE_TAG
from its `publishes` (repository, tag), so the buildspec pushes `$REPOSITORY_URI:$IMAGE_TAG`;
the environments deploy from the same repository; the manifests' placeholder image carries
the repository's name, so the deploy pins that container by digest.

The image is `FROM ${BASE}`, default `localhost/conveyor/web`: Conveyor's local `web` image
(nginx, built offline from Debian's packages, so nothing is pulled from a registry). It serves
/www on port 8080 (index.html for unknown paths) and answers /healthz with
the APP_VERSION and VCS_REF the build passes. On AWS, BASE_IMAGE names a copy of it in ECR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.errors import ConfigError
from conveyor.scaffold.detect import AppInfo, TestsInfo

WEB_BASE = "localhost/conveyor/web"
WEB_ROOT = "/www"
PORT = 8080
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]*$")


@dataclass(frozen=True)
class Ports:
    test: int = 8081
    prod: int = 8080


def unit_test_commands(app: AppInfo) -> list[str]:
    """The pre_build commands that run the unit tests and leave reports/unit-junit.xml."""
    if app.runner == "karma":
        return [
            'CHROME_BIN="${CHROME_BIN:-$(command -v chromium || command -v chromium-browser '
            '|| command -v google-chrome || true)}" && export CHROME_BIN',
            "npx ng test --watch=false --no-progress --browsers=ChromeHeadlessCI",
        ]
    if app.runner == "vitest" and app.angular_major:
        return [
            "npx ng test --watch=false --no-progress --reporters=junit --reporters=default "
            "--output-file=reports/unit-junit.xml"
        ]
    if app.runner == "vitest":
        return [
            "npx vitest run --reporter=default --reporter=junit --outputFile=reports/unit-junit.xml"
        ]
    # jest, with jest-junit (JEST_JUNIT_* in env.variables)
    if app.angular_major:
        return ["npx ng test --ci --reporters=default --reporters=jest-junit"]
    return ["npx jest --ci --reporters=default --reporters=jest-junit"]


def buildspec(app: AppInfo) -> str:
    runner = {"karma": "Karma", "jest": "Jest", "vitest": "Vitest"}[app.runner]
    tests = "\n".join(f"      - {_yaml_str(c)}" for c in unit_test_commands(app))
    jest_env = (
        '    JEST_JUNIT_OUTPUT_DIR: "reports"\n    JEST_JUNIT_OUTPUT_NAME: "unit-junit.xml"\n'
        if app.runner == "jest"
        else ""
    )
    return f"""\
# Build of {app.name} ({app.kind}, unit tests with {runner}): install, unit tests with a
# JUnit report, production build, image build and push. Written by `conveyor init --app`;
# runs unchanged under Conveyor and on AWS CodeBuild.
#
# Variables:
#   REPOSITORY_URI     where the image goes: set by Conveyor's `build` action from its
#                      `publishes` (e.g. 127.0.0.1:5001/{app.name}); on CodeBuild, the ECR URI
#   IMAGE_TAG          the tag to push: set from `publishes.tag` (default: the commit)
#   CONTAINER_RUNTIME  podman (Conveyor, locally) or docker (default, CodeBuild)
#   BASE_IMAGE         the serving image: set from `publishes.base` (Conveyor's local
#                      nginx image {WEB_BASE} at its recipe's tag; on AWS its ECR copy)
#   APP_VERSION        the version /healthz reports (default: package.json's)
#   CHROME_BIN         Karma's browser (default: chromium on PATH)
version: 0.2

env:
  variables:
    NG_CLI_ANALYTICS: "false"
{jest_env}  exported-variables:
    - IMAGE_TAG
    - APP_VERSION
    - ImageURI
    - ImageDigest

phases:
  install:
    runtime-versions:
      nodejs: {app.node_major}
    commands:
      - node --version
      # --prefer-offline trusts cached package metadata, and npm does not revalidate it when a
      # version is missing (ETARGET): a stale cache retries once with fresh metadata
      - npm ci --no-audit --no-fund --prefer-offline || npm ci --no-audit --no-fund
  pre_build:
    commands:
      - IMAGE_TAG="${{IMAGE_TAG:-${{CODEBUILD_RESOLVED_SOURCE_VERSION:-latest}}}}"
      - APP_VERSION="${{APP_VERSION:-$(node -p 'require("./package.json").version')}}"
      - export IMAGE_TAG APP_VERSION
      - echo "building ${{REPOSITORY_URI:?REPOSITORY_URI is not set}}:${{IMAGE_TAG}} (version ${{APP_VERSION}})"
      - >-
        if [ "${{CONTAINER_RUNTIME:-docker}}" = docker ] && [ -n "${{AWS_ACCOUNT_ID:-}}" ] && command -v aws >/dev/null
        && [ "${{AWS_DEFAULT_REGION:-local}}" != local ]; then
        aws ecr get-login-password --region "$AWS_DEFAULT_REGION"
        | docker login --username AWS --password-stdin "${{REPOSITORY_URI%%/*}}";
        fi
{tests}
  build:
    commands:
      - {app.build_command}
      - >-
        ${{CONTAINER_RUNTIME:-docker}} build --file Containerfile
        ${{BASE_IMAGE:+--build-arg BASE="$BASE_IMAGE"}}
        --build-arg APP_VERSION="$APP_VERSION" --build-arg VCS_REF="${{CODEBUILD_RESOLVED_SOURCE_VERSION:-unknown}}"
        $( [ "${{CONTAINER_RUNTIME:-docker}}" = podman ] && echo --timestamp 0 --no-cache )
        --tag "$REPOSITORY_URI:$IMAGE_TAG" .
  post_build:
    commands:
      # push, then export the pushed image's digest (CodePipeline reads #{{Build.ImageURI}});
      # podman reports it with --digestfile, docker in RepoDigests
      - >-
        if [ "$CODEBUILD_BUILD_SUCCEEDING" = 1 ]; then
        if [ "${{CONTAINER_RUNTIME:-docker}}" = podman ]; then
        podman push --digestfile image.digest "$REPOSITORY_URI:$IMAGE_TAG" && ImageDigest=$(cat image.digest);
        else docker push "$REPOSITORY_URI:$IMAGE_TAG"
        && ImageDigest=$(docker inspect --format '{{{{index .RepoDigests 0}}}}' "$REPOSITORY_URI:$IMAGE_TAG" | cut -d@ -f2);
        fi
        && ImageURI="$REPOSITORY_URI@$ImageDigest" && export ImageDigest ImageURI
        && printf '{{"ImageURI":"%s"}}\\n' "$ImageURI" > imageDetail.json;
        else echo "build failed: image not pushed"; fi

reports:
  unit-tests:
    files:
      - unit-junit.xml
    base-directory: reports
    file-format: JUNITXML

artifacts:
  files:
    - k8s/**/*
    - imageDetail.json

cache:
  paths:
    - /root/.npm/**/*
"""


def containerfile(app: AppInfo) -> str:
    if not _PLAIN_PATH.match(app.output_dir) or ".." in app.output_dir.split("/"):
        raise ConfigError(
            f"the build's output path '{app.output_dir}' is not a plain relative path; "
            "set outputPath in angular.json to one (e.g. dist/app)"
        )
    return f"""\
# {app.name}: the production build ({app.output_dir}/) served by the `web` image.
# Written by `conveyor init --app`.
#
# BASE (default {WEB_BASE}) is Conveyor's local web image: nginx built offline from
# Debian's packages, so nothing is pulled from a registry. It serves {WEB_ROOT} on
# port {PORT}, answers unknown paths with index.html (client-side routes) and /healthz with
# {{"status":"ok","version":APP_VERSION,"commit":VCS_REF}}: the app needs no code for it.
# On AWS, the buildspec passes BASE_IMAGE (a copy of that image in ECR) as BASE.
ARG BASE={WEB_BASE}
FROM ${{BASE}}

ARG APP_VERSION=dev
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="{app.name}" \\
      org.opencontainers.image.version="${{APP_VERSION}}" \\
      org.opencontainers.image.revision="${{VCS_REF}}"
ENV APP_VERSION="${{APP_VERSION}}" VCS_REF="${{VCS_REF}}"

COPY {app.output_dir}/ {WEB_ROOT}/
EXPOSE {PORT}
"""


def deployment(app: AppInfo) -> str:
    return f"""\
# {app.name}. `image:` is a placeholder whose name is the image repository ({app.name}):
# the deploy action finds this container by it and pins the image by digest
# (registry/{app.name}@sha256:...). Written by `conveyor init --app`.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app.name}
  labels:
    app: {app.name}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {app.name}
  template:
    metadata:
      labels:
        app: {app.name}
    spec:
      containers:
        - name: {app.name}
          image: {app.name}:latest
          ports:
            - name: http
              containerPort: {PORT}
          readinessProbe:
            httpGet:
              path: /healthz
              port: {PORT}
            initialDelaySeconds: 1
            periodSeconds: 5
            timeoutSeconds: 3
          livenessProbe:
            httpGet:
              path: /healthz
              port: {PORT}
            initialDelaySeconds: 5
            periodSeconds: 10
            timeoutSeconds: 3
          resources:
            requests:
              cpu: 10m
              memory: 16Mi
            limits:
              memory: 128Mi
"""


def service(app: AppInfo) -> str:
    return f"""\
# Port 80 in the cluster -> {PORT} in the pod (podman kube play ignores Services; Conveyor's
# podman driver publishes the container port itself).
apiVersion: v1
kind: Service
metadata:
  name: {app.name}
  labels:
    app: {app.name}
spec:
  selector:
    app: {app.name}
  ports:
    - name: http
      port: 80
      targetPort: {PORT}
"""


def tests_buildspec(tests: TestsInfo) -> str:
    module = "selenium" if tests.kind == "pytest-selenium" else "playwright"
    install = (
        f'else "$PYTHON" -m venv .venv && .venv/bin/python -m pip install --quiet '
        f'-r {tests.requirements} && PYTHON="$PWD/.venv/bin/python"; fi'
        if tests.requirements
        else f'else echo "$PYTHON has no pytest/{module} and there is no requirements.txt"; '
        "false; fi"
    )
    return f"""\
# The end-to-end suite ({tests.label}) against the app deployed in the test environment.
# Written by `conveyor init --tests`.
#
# Variables:
#   BASE_URL         the test environment's URL (the pipeline passes #{{DeployTest.URL}})
#   EXPECTED_COMMIT  the commit the deployed app's /healthz must report (optional)
#   PYTHON           the interpreter (default python3); if it lacks pytest and {module},
#                    the requirements go into a fresh virtualenv .venv/
version: 0.2

env:
  variables:
    SE_OFFLINE: "true"

phases:
  install:
    commands:
      - PYTHON="${{PYTHON:-python3}}" && export PYTHON
      - >-
        if "$PYTHON" -c "import pytest, {module}" 2>/dev/null;
        then echo "using $PYTHON (pytest and {module} already installed)";
        {install}
  build:
    commands:
      - echo "end-to-end tests against ${{BASE_URL:?BASE_URL is not set}}"
      - '"$PYTHON" -m pytest --junitxml=reports/e2e-junit.xml'

reports:
  e2e:
    files:
      - e2e-junit.xml
    base-directory: reports
    file-format: JUNITXML

artifacts:
  files:
    - reports/**/*
"""


_E2E_STAGE = """\
  - name: EndToEndTests
    actions:
      - name: RunEndToEndTests
        type: build
        inputs: [e2e_src]
        outputs: [e2e_reports]
        namespace: E2E
        timeout: 15m
        config:
          buildspec: buildspec.yml
          env:
            BASE_URL: "#{DeployTest.URL}"
            EXPECTED_COMMIT: "#{SourceApp.CommitId}"
"""


def _e2e_source(e2e_repo: str) -> str:
    """The source action reading the end-to-end suite's repository."""
    return f"""\
      - name: SourceTests
        type: source.git
        outputs: [e2e_src]
        namespace: SourceE2E
        config: {{repository: {e2e_repo}, branch: main}}
"""


def pipeline(app: AppInfo, tests: TestsInfo | None, name: str, ports: Ports) -> str:
    e2e_source = _e2e_source(f"{name}-e2e") if tests else ""
    e2e_stage = _E2E_STAGE if tests else ""
    evidence = "the unit and end-to-end reports" if tests else "the unit-test report"
    return f"""\
# {name}: {app.kind} app built, unit-tested, deployed to test{", checked end to end" if tests else ""},
# approved by a person, promoted by digest to prod, deployed there and watched.
# Written by `conveyor init --app`; check it with `conveyor validate`.
#
# The publish contract: the Build action's `publishes` (repository {name}, tag = the commit)
# sets REPOSITORY_URI and IMAGE_TAG for its buildspec; both environments deploy from the
# repository {name}; k8s/deployment.yaml's container image is named {name}.
name: {name}
executionMode: SUPERSEDED
environments:
  test:
    registry: test          # the local test registry; an ECR URI on AWS
    repository: {name}
    driver: podman          # or kubernetes (context + namespace), eks on AWS
    port: {ports.test}
    namespace: {name}-test
  prod:
    registry: prod
    repository: {name}
    driver: podman
    port: {ports.prod}
    namespace: {name}-prod
triggers:
  - source: SourceApp
    branches: {{includes: [main]}}
stages:
  - name: Source
    actions:
      - name: SourceApp
        type: source.git
        outputs: [app_src]
        namespace: SourceApp
        config: {{repository: {name}, branch: main}}
{e2e_source}  - name: Build
    actions:
      - name: BuildAndPushImage
        type: build
        inputs: [app_src]
        outputs: [build_out]
        namespace: Build
        timeout: 20m
        config:
          buildspec: buildspec.yml
          # base: the Containerfile's BASE is Conveyor's `web` image (on AWS its ECR copy)
          publishes: {{environment: test, repository: {name}, tag: "#{{SourceApp.CommitId}}", base: web}}
  - name: DeployTest
    actions:
      - name: DeployTest
        type: deploy
        environment: test
        inputs: [build_out]
        namespace: DeployTest
        timeout: 5m
        config: {{manifests: k8s/, image: "#{{Build.ImageURI}}"}}
{e2e_stage}  - name: ProdApproval
    actions:
      - name: ProdApproval
        type: approval
        config:
          customData: Read {evidence}, then approve the release of this image to production.
          digest: "#{{Build.ImageDigest}}"
          timeout: 7d
  - name: Prod
    actions:
      - name: PromoteImage
        type: image.promote
        runOrder: 1
        namespace: Promote
        config: {{image: "#{{Build.ImageURI}}", to: prod, repository: {name}}}
      - name: DeployProd
        type: deploy
        runOrder: 2
        environment: prod
        inputs: [build_out]
        namespace: DeployProd
        timeout: 5m
        config: {{manifests: k8s/, image: "#{{Promote.ImageURI}}"}}
      - name: MonitorProd
        type: monitor
        runOrder: 3
        environment: prod
        timeout: 10m
        config:
          bake: 10s
          interval: 1
          probes: [{{path: /healthz, minAvailability: 0.99, maxLatencyMs: 500}}]
"""


def _yaml_str(text: str) -> str:
    """A command as a YAML plain or single-quoted scalar."""
    if re.match(r"^[A-Za-z0-9_./$ =-]+$", text) and ": " not in text and not text.startswith("-"):
        return text
    return "'" + text.replace("'", "''") + "'"
