"""What the CodeBuild image of the synthesized projects ships, read from its Dockerfile.

Source: aws/aws-codebuild-docker-images, ubuntu/standard/7.0/Dockerfile (Ubuntu 22.04). It
installs kubectl 1.25.6 at /usr/local/bin/kubectl (from the EKS S3 bucket), the AWS CLI v2 at
/usr/local/bin/aws, Docker, Node 18 (other versions through runtime-versions), Python 3.11
(pyenv), and **no browser and no chromedriver**. The Selenium project therefore installs Google
Chrome and the matching chromedriver in the e2e buildspec's install phase (INSTALL_BROWSER),
at the paths it also passes as CHROME_BINARY and CHROMEDRIVER.

The rehearsal maps those image paths to this machine's Debian chromium (LOCAL_EQUIVALENTS);
a browser variable the project leaves unset falls back to the suite's Debian default
(SUITE_BROWSER_DEFAULTS), which the image does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CodeBuildImage:
    name: str
    chrome: str
    chromedriver: str
    kubectl: str
    ships: frozenset[str] = field(default_factory=frozenset)  # paths present in the image


STANDARD_7 = CodeBuildImage(
    name="aws/codebuild/standard:7.0",
    chrome="/usr/bin/google-chrome",
    chromedriver="/usr/local/bin/chromedriver",
    kubectl="/usr/local/bin/kubectl",
    ships=frozenset({"/usr/local/bin/kubectl", "/usr/local/bin/aws", "/usr/local/bin/docker"}),
)
IMAGES = {STANDARD_7.name: STANDARD_7}
DEFAULT = STANDARD_7

# the e2e suite's defaults (examples/webapp-e2e/conftest.py): Debian's chromium packages
SUITE_BROWSER_DEFAULTS = {
    "CHROME_BINARY": "/usr/bin/chromium",
    "CHROMEDRIVER": "/usr/bin/chromedriver",
}
# where the rehearsal finds, on this machine, what the image has (or installs) at a path
LOCAL_EQUIVALENTS = {
    "/usr/bin/google-chrome": "/usr/bin/chromium",
    "/usr/local/bin/chromedriver": "/usr/bin/chromedriver",
}
