"""`source.git`: check out a branch (or a pinned commit) of any git URL or path.

Outputs the tree as the action's output artifact and the variables CommitId, BranchName,
AuthorEmail, AuthorName, AuthorDate, CommitMessage, RepositoryName (CodePipeline's names).
"""

from __future__ import annotations

from typing import ClassVar

from conveyor.actions.base import ActionConfig, ActionContext, ActionResult, BaseAction
from conveyor.adapters import git
from conveyor.errors import ActionError
from conveyor.model.validate import did_you_mean


class GitSourceConfig(ActionConfig):
    repository: str
    branch: str = "main"
    commit: str | None = None


class GitSource(BaseAction):
    type_name = "source.git"
    Config = GitSourceConfig
    output_variables: ClassVar[frozenset[str] | None] = frozenset(
        {
            "CommitId",
            "BranchName",
            "AuthorEmail",
            "AuthorName",
            "AuthorDate",
            "CommitMessage",
            "RepositoryName",
        }
    )
    default_timeout = 600

    def run(self, ctx: ActionContext) -> ActionResult:
        cfg = GitSourceConfig.model_validate(dict(ctx.config))
        url = git.resolve_url(cfg.repository, ctx.state_dir)
        cache = git.GitCache(ctx.state_dir)
        ctx.log.write(f"fetching {url} ({cfg.branch})\n")
        repo = cache.fetch(url, cfg.branch)
        pinned = cfg.commit or ctx.revisions.get(ctx.action.name, {}).get("CommitId")
        if pinned:
            commit = git.commit_of(repo, pinned)
            if commit is None:
                raise ActionError(f"commit {pinned} is not in {cfg.repository}")
        else:
            commit = git.commit_of(repo, f"refs/heads/{cfg.branch}")
            if commit is None:
                branches = cache.branches(repo)
                raise ActionError(
                    f"branch '{cfg.branch}' does not exist in {cfg.repository}"
                    f"{did_you_mean(cfg.branch, branches)} (branches: {', '.join(branches) or 'none: the repository is empty'})"
                )
        facts = git.commit_facts(repo, commit)
        n = 0
        for out_dir in ctx.outputs.values():
            n = git.export_tree(repo, commit, out_dir)
        ctx.log.write(
            f"checked out {commit[:12]} ({n} files): {facts['CommitMessage'].splitlines()[0] if facts['CommitMessage'] else ''}\n"
        )
        facts["BranchName"] = cfg.branch
        facts["RepositoryName"] = cfg.repository
        return ActionResult(
            variables=facts,
            revision=dict(facts),
            details={
                "revision": {
                    "repository": cfg.repository,
                    "url": url,
                    "commit": commit,
                    "branch": cfg.branch,
                }
            },
        )
