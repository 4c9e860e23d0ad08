"""Semantic validation of a pipeline: every problem, collected, each with the path it is at.

The spec layer turns paths into `file:line`. Action-type knowledge (known types, their
config, their declared output variables) is passed in, so this module stays pure.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.model.pipeline import Action, Path, Pipeline
from conveyor.model.variables import (
    PIPELINE_NS,
    REF,
    SYSTEM_NS,
    SYSTEM_VARS,
    find_refs,
    pattern_problem,
    safe_form,
)


@dataclass(frozen=True)
class Finding:
    path: Path
    message: str


@dataclass(frozen=True)
class ActionTypeInfo:
    """What validation needs to know of an action type."""

    check_config: Callable[[Action], Sequence[tuple[Path, str]]] = lambda a: ()
    output_variables: frozenset[str] | None = None  # None: not declared, anything goes
    needs_environment: bool = False


@dataclass(frozen=True)
class Catalogue:
    types: Mapping[str, ActionTypeInfo] = field(default_factory=dict)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


Add = Callable[[Path, str], None]
Order = dict[tuple[str, str], tuple[int, int]]


def validate(p: Pipeline, catalogue: Catalogue) -> list[Finding]:
    """Every problem of the pipeline, each at its path, in the order of the checks below."""
    out: list[Finding] = []

    def add(path: Path, msg: str) -> None:
        out.append(Finding(path, msg))

    if not p.stages:
        add((*p.path, "stages"), "a pipeline needs at least one stage")
    _names(p, add)
    # artifacts: who produces what, in which order
    order: dict[tuple[str, str], tuple[int, int]] = {}
    for si, s in enumerate(p.stages):
        for a in s.actions:
            order[(s.name, a.name)] = (si, a.run_order)
    _artifacts(p, order, add)
    namespaces = _namespaces(p, add)
    _references(p, order, namespaces, catalogue, add)
    _types(p, catalogue, add)
    _publishes(p, add)
    _triggers(p, add)
    out.extend(publish_contract(p))
    return out


def _names(p: Pipeline, add: Add) -> None:
    """Stage and action names, runOrder and timeout."""
    # names
    seen_stage: dict[str, Path] = {}
    for s in p.stages:
        if s.name in seen_stage:
            add((*s.path, "name"), f"duplicate stage name '{s.name}'")
        seen_stage[s.name] = s.path
        if not s.actions:
            add((*s.path, "actions"), f"stage '{s.name}' has no actions")
        names: set[str] = set()
        for a in s.actions:
            if a.name in names:
                add((*a.path, "name"), f"duplicate action name '{a.name}' in stage '{s.name}'")
            names.add(a.name)
            if not (1 <= a.run_order <= 999):
                add(
                    (*a.path, "runOrder"),
                    f"action '{a.name}': runOrder must be 1..999, got {a.run_order}",
                )
            if a.timeout_seconds is not None and a.timeout_seconds <= 0:
                add((*a.path, "timeout"), f"action '{a.name}': timeout must be positive")


def _artifacts(p: Pipeline, order: Order, add: Add) -> None:
    """Who produces what, in which order: an input comes from an earlier action."""
    producers: dict[str, tuple[str, str, Path]] = {}
    for s, a in p.all_actions():
        for i, art in enumerate(a.outputs):
            if art in producers:
                other = producers[art]
                add(
                    (*a.path, "outputs", i),
                    f"artifact '{art}' is already produced by action '{other[1]}'",
                )
            else:
                producers[art] = (s.name, a.name, (*a.path, "outputs", i))
    for s, a in p.all_actions():
        mine = order[(s.name, a.name)]
        for i, art in enumerate(a.inputs):
            if art not in producers:
                known = sorted(producers)
                add(
                    (*a.path, "inputs", i),
                    f"action '{a.name}' reads artifact '{art}' that no action produces"
                    f"{did_you_mean(art, known)} (known: {', '.join(known) or 'none'})",
                )
                continue
            ps, pa, _ = producers[art]
            if (ps, pa) == (s.name, a.name):
                add(
                    (*a.path, "inputs", i),
                    f"action '{a.name}' reads its own output '{art}': a cycle",
                )
            elif order[(ps, pa)] >= mine:
                add(
                    (*a.path, "inputs", i),
                    f"action '{a.name}' reads artifact '{art}' from action '{pa}', which does not run "
                    "before it (a later stage or the same or a later runOrder): a cycle",
                )


def _namespaces(p: Pipeline, add: Add) -> dict[str, tuple[str, str]]:
    """The namespaces (each once, none reserved) and the pipeline variables' patterns."""
    namespaces: dict[str, tuple[str, str]] = {}
    for s, a in p.all_actions():
        if a.namespace:
            if a.namespace in (PIPELINE_NS, SYSTEM_NS):
                add((*a.path, "namespace"), f"namespace '{a.namespace}' is reserved")
            elif a.namespace in namespaces:
                add((*a.path, "namespace"), f"duplicate namespace '{a.namespace}'")
            else:
                namespaces[a.namespace] = (s.name, a.name)
    for i, v in enumerate(p.variables):
        bad = v.allowed_pattern is not None and pattern_problem(v.allowed_pattern)
        if bad:
            add((*(v.path or ("variables", i)), "allowedPattern"), f"variable '{v.name}': {bad}")
        elif (
            v.allowed_pattern is not None
            and v.default is not None
            and re.fullmatch(v.allowed_pattern, v.default) is None
        ):
            add(
                (*(v.path or ("variables", i)), "defaultValue"),
                f"variable '{v.name}': defaultValue {v.default!r} does not match its "
                f"allowedPattern {v.allowed_pattern!r}",
            )
    return namespaces


def _references(
    p: Pipeline,
    order: Order,
    namespaces: Mapping[str, tuple[str, str]],
    catalogue: Catalogue,
    add: Add,
) -> None:
    """Every `#{ns.var}` names a variable that exists and is set before the action runs."""
    pipeline_vars = {v.name for v in p.variables}
    for s, a in p.all_actions():
        mine = order[(s.name, a.name)]
        for path, ns, var in find_refs(dict(a.config), (*a.path, "config")):
            ref = f"#{{{ns}.{var}}}"
            if ns == PIPELINE_NS:
                if var not in pipeline_vars:
                    add(
                        path,
                        f"{ref}: no pipeline variable '{var}'{did_you_mean(var, sorted(pipeline_vars))}",
                    )
            elif ns == SYSTEM_NS:
                if var not in SYSTEM_VARS:
                    add(
                        path,
                        f"{ref}: unknown system variable (known: {', '.join(sorted(SYSTEM_VARS))})",
                    )
            elif ns not in namespaces:
                add(
                    path,
                    f"{ref}: unknown namespace '{ns}'{did_you_mean(ns, sorted(namespaces))}"
                    f" (known: {', '.join(sorted(namespaces)) or 'none'})",
                )
            else:
                ps, pa = namespaces[ns]
                if order[(ps, pa)] >= mine:
                    add(
                        path,
                        f"{ref}: namespace '{ns}' belongs to action '{pa}', which does not run before '{a.name}'",
                    )
                else:
                    _, producer = p.stage(ps), p.stage(ps).action(pa)
                    info = catalogue.types.get(producer.type)
                    if (
                        info
                        and info.output_variables is not None
                        and var not in info.output_variables
                    ):
                        add(
                            path,
                            f"{ref}: action '{pa}' ({producer.type}) has no output variable '{var}'"
                            f"{did_you_mean(var, sorted(info.output_variables))}"
                            f" (known: {', '.join(sorted(info.output_variables))})",
                        )


def _types(p: Pipeline, catalogue: Catalogue, add: Add) -> None:
    """Known action types, their config, and their environment."""
    # action types and their config
    known_types = sorted(catalogue.types)
    for _, a in p.all_actions():
        info = catalogue.types.get(a.type)
        if info is None:
            add(
                (*a.path, "type"),
                f"action '{a.name}': unknown action type '{a.type}'"
                f"{did_you_mean(a.type, known_types)} (known: {', '.join(known_types)})",
            )
            continue
        for path, msg in info.check_config(a):
            add((*a.path, *path), f"action '{a.name}': {msg}")
        if a.environment is not None and a.environment not in p.environments:
            envs = sorted(p.environments)
            add(
                (*a.path, "environment"),
                f"action '{a.name}': unknown environment '{a.environment}'"
                f"{did_you_mean(a.environment, envs)} (known: {', '.join(envs) or 'none'})",
            )
        elif info.needs_environment and a.environment is None:
            add(
                (*a.path,),
                f"action '{a.name}': a {a.type} action needs `environment:`"
                f" (one of: {', '.join(sorted(p.environments)) or 'define environments first'})",
            )


def _publishes(p: Pipeline, add: Add) -> None:
    """A published image goes to the repository its environment deploys from."""
    # a published image goes to the repository its environment deploys from
    for _, a in p.all_actions():
        pub = a.config.get("publishes")
        if not isinstance(pub, Mapping) or not isinstance(pub.get("repository"), str):
            continue
        env_name = pub.get("environment")
        env = p.environments.get(env_name) if isinstance(env_name, str) else None
        if isinstance(env_name, str) and env is None:
            envs = sorted(p.environments)
            add(
                (*a.path, "config", "publishes", "environment"),
                f"action '{a.name}': publishes to unknown environment '{env_name}'"
                f"{did_you_mean(env_name, envs)} (known: {', '.join(envs) or 'none'})",
            )
        elif (
            env is not None
            and env.repository
            and not any(find_refs([pub["repository"], env.repository]))
        ):
            repo = _repository_path(pub["repository"])
            if repo != _repository_path(env.repository):
                add(
                    (*a.path, "config", "publishes", "repository"),
                    f"action '{a.name}' publishes to repository '{repo}' but environment "
                    f"'{env.name}' deploys from '{env.repository}': the deploy would not find "
                    "the image; use the same repository in both places",
                )


def _triggers(p: Pipeline, add: Add) -> None:
    # triggers
    sources = {a.name for a in p.source_actions()}
    for t in p.triggers:
        if t.source_action not in sources:
            add(
                (*t.path, "source"),
                f"trigger names source action '{t.source_action}', which is not a "
                f"source action{did_you_mean(t.source_action, sorted(sources))} (known: {', '.join(sorted(sources)) or 'none'})",
            )


def publish_contract(p: Pipeline) -> list[Finding]:
    """The publish contract: a build's `env` agrees with its `publishes` (which sets
    REPOSITORY_URI and IMAGE_TAG), and an image.promote copies into the repository its target
    environment deploys from. (The manifests' image name: conveyor.spec.publish_contract.)"""
    out: list[Finding] = []
    for _, a in p.all_actions():
        pub = a.config.get("publishes")
        env = a.config.get("env")
        if a.type == "build" and isinstance(pub, Mapping) and isinstance(env, Mapping):
            wanted = {
                "IMAGE_TAG": pub.get("tag", "latest"),
                "REPOSITORY_URI": pub.get("repository"),
            }
            for var, value in wanted.items():
                given = env.get(var)
                if not isinstance(given, str) or not isinstance(value, str):
                    continue
                same = (
                    _repository_path(given) == _repository_path(value)
                    if var == "REPOSITORY_URI"
                    else given == value
                )
                if not same:
                    out.append(
                        Finding(
                            (*a.path, "config", "env", var),
                            f"action '{a.name}': env {var} '{given}' differs from publishes "
                            f"('{value}'): the build sets {var} from publishes, so the image "
                            f"would be looked for elsewhere; remove {var} from env",
                        )
                    )
        to, repo = a.config.get("to"), a.config.get("repository")
        if a.type == "image.promote" and isinstance(to, str) and isinstance(repo, str):
            target = p.environments.get(to)
            if (
                target is not None
                and target.repository
                and not any(find_refs([repo, target.repository]))
                and _repository_path(repo) != _repository_path(target.repository)
            ):
                out.append(
                    Finding(
                        (*a.path, "config", "repository"),
                        f"action '{a.name}' promotes into repository '{repo}' but environment "
                        f"'{to}' deploys from '{target.repository}': use the same repository",
                    )
                )
    return out


def _repository_path(repository: str) -> str:
    """`127.0.0.1:5001/webapp` and `webapp` name the same repository of an environment."""
    first, _, rest = repository.partition("/")
    return rest if rest and ("." in first or ":" in first or first == "localhost") else repository


def warnings(p: Pipeline) -> list[Finding]:
    """What is legal but probably a mistake: a pipeline variable no action reads."""
    read = {
        var
        for _, a in p.all_actions()
        for _, ns, var in find_refs(dict(a.config))
        if ns == PIPELINE_NS
    }
    read |= {
        var
        for env in p.environments.values()
        for _, ns, var in find_refs(dict(env.settings))
        if ns == PIPELINE_NS
    }
    return [
        Finding(
            v.path or ("variables",),
            f"pipeline variable '{v.name}' is declared but no action reads it "
            f"(#{{{PIPELINE_NS}.{v.name}}}): use it in an action's config, or remove it",
        )
        for v in p.variables
        if v.name not in read
    ]


def command_warnings(p: Pipeline) -> list[Finding]:
    """`#{ns.var}` written inside command text: Conveyor passes it as data, and says how to be
    explicit about it (the value in `env:`, the command reading the quoted variable)."""
    out: list[Finding] = []
    for _, a in p.all_actions():
        commands = a.config.get("commands") if a.type == "shell" else None
        if isinstance(commands, list | tuple):
            for i, c in enumerate(commands):
                if isinstance(c, str) and REF.search(c):
                    refs = ", ".join(sorted({m.group(0) for m in REF.finditer(c)}))
                    out.append(
                        Finding(
                            (*a.path, "config", "commands", i),
                            f"warning: action '{a.name}': {refs} inside a command is passed as "
                            f"data in an environment variable, never spliced; the safe form "
                            f"Conveyor runs is: {safe_form(c)}",
                        )
                    )
        spec = a.config.get("buildspec") if a.type == "build" else None
        if isinstance(spec, str) and "\n" in spec.strip() and REF.search(spec):
            out.append(
                Finding(
                    (*a.path, "config", "buildspec"),
                    f"warning: action '{a.name}': an inline buildspec uses #{{...}}; in its "
                    'commands each value is passed as data ("${CONVEYOR_VAR_NS_VAR}"); to be '
                    'explicit, put it in config.env (NAME: "#{ns.var}") and use "$NAME"',
                )
            )
    return out
