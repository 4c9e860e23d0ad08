"""CodeBuild buildspecs: read and checked (spec.py), run on this machine or in a podman
container (run.py and its parts). See run.py for how a build runs."""
