"""The Dockerfile and .dockerignore, read as text (no Docker here); hadolint runs in tests/chart.

A small parser splits the Dockerfile into stages of (instruction, arguments), joining continued
lines, so the checks are about instructions, not about lines that happen to contain a word.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import REPO_ROOT, render_chart

DOCKERFILE = REPO_ROOT / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(pip\s+(install|wheel|download)|apt-get|apt\s|gcc|g\+\+|make|build-essential|"
                         r"setuptools|uv\s+pip)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (with defaults) and the stages of a Dockerfile."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for entry in logical:
        instruction, _, rest = entry.partition(" ")
        instruction = instruction.upper()
        rest = " ".join(rest.split())
        if instruction == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, entry
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        elif not stages:
            assert instruction == "ARG", f"only ARG may come before FROM: {entry}"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


def expand(base: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], base)


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


class TestStages:
    def test_should_build_in_one_stage_and_run_from_another_on_the_same_pinned_base(self, dockerfile) -> None:
        args, stages = dockerfile
        assert len(stages) >= 2
        bases = {expand(s.base, args) for s in stages}
        assert len(bases) == 1, bases  # the venv's interpreter path must exist in the runtime stage
        (base,) = bases
        repository, _, tag = base.partition(":")
        assert repository == "python"
        # A full version and the Debian release, never a moving tag such as 3.11-slim or latest.
        assert re.fullmatch(r"3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", tag), tag

    def test_should_install_exactly_the_lock_offline_in_the_build_stage(self, dockerfile) -> None:
        _, stages = dockerfile
        build = " ".join(stages[0].all("RUN"))
        assert "pip wheel --only-binary=:all: --wheel-dir /wheels -r requirements.lock" in build
        assert re.search(r"pip install --no-index --no-deps .*-r requirements.lock", build)
        assert "pip check" in build
        assert "compileall" in build and "--invalidation-mode unchecked-hash" in build
        assert "requirements.lock" in " ".join(stages[0].all("COPY"))
        assert "requirements-dev.lock" not in DOCKERFILE.read_text()

    def test_should_not_assume_pip_or_python_in_the_base_image(self, dockerfile) -> None:
        # Debian's own python3 (the debootstrap base of the local cluster) has neither `pip` nor a
        # `python` command: every pip is a virtualenv's, made with `python3 -m venv`.
        _, stages = dockerfile
        build = stages[0]
        commands = [c.strip() for run in build.all("RUN") for c in re.split(r"&&|;|\|\|", run)]
        for command in commands:
            program = command.split()[0]
            assert program not in ("pip", "pip3", "python"), command
            if program.endswith("pip") or program.endswith("/python"):
                venv = program.rsplit("/bin/", 1)[0]
                assert any(c.startswith(f"python3 -m venv {venv}") for c in commands), command
        assert any(c.startswith("python3 -m venv ") for c in commands)

    def test_should_have_no_build_tools_in_the_final_stage(self, dockerfile) -> None:
        _, stages = dockerfile
        final = stages[-1]
        for run in final.all("RUN"):
            assert not BUILD_TOOLS.search(run), run
        copies = final.all("COPY")
        assert copies == [f"--from={stages[0].name} /opt/venv /opt/venv"]

    def test_should_run_as_the_fixed_non_root_uid_the_chart_expects(self, dockerfile) -> None:
        _, stages = dockerfile
        final = stages[-1]
        assert final.all("USER")[-1] == "10001:10001"
        run = " ".join(final.all("RUN"))
        assert "--uid 10001" in run and "--gid 10001" in run
        values = yaml.safe_load((REPO_ROOT / "charts/langgraph-pg/values.yaml").read_text())
        assert values["securityContext"]["runAsUser"] == 10001
        assert values["podSecurityContext"]["runAsGroup"] == 10001

    def test_should_serve_by_default_in_exec_form_without_an_entrypoint(self, dockerfile) -> None:
        _, stages = dockerfile
        final = stages[-1]
        assert final.all("ENTRYPOINT") == []  # so the Job's command replaces the CMD whole
        assert json.loads(final.all("CMD")[-1]) == ["python", "-m", "service"]
        env = " ".join(final.all("ENV"))
        assert "PATH=/opt/venv/bin:$PATH" in env
        assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem: use the compiled bytecode

    def test_should_match_the_commands_the_chart_runs(self) -> None:
        docs = render_chart(values={"database.url": "postgresql://u:p@db/x"})
        commands = {}
        for doc in docs:
            if doc["kind"] in ("Deployment", "Job"):
                commands[doc["kind"]] = doc["spec"]["template"]["spec"]["containers"][0]["command"]
        assert commands == {"Deployment": ["python", "-m", "service"], "Job": ["python", "-m", "migrate"]}


class TestDockerignore:
    def test_should_send_only_what_the_dockerfile_copies(self, dockerfile) -> None:
        _, stages = dockerfile
        patterns = [p.strip() for p in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                    if p.strip() and not p.strip().startswith("#")]
        assert patterns[0] == "*"  # everything is excluded unless re-included below
        included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
        sources: set[str] = set()
        for stage in stages:
            for copy in stage.all("COPY"):
                parts = [p for p in copy.split() if not p.startswith("--")]
                if copy.startswith("--from"):
                    continue
                sources.update(p.rstrip("/").removeprefix("./") for p in parts[:-1])
        assert sources == included
        for source in sources:
            assert (REPO_ROOT / source).exists(), source

    def test_should_keep_bytecode_caches_out(self) -> None:
        text = (REPO_ROOT / ".dockerignore").read_text()
        assert "**/__pycache__" in text.splitlines()


class TestParser:
    def test_should_find_build_tools_and_shell_forms_it_must_reject(self) -> None:
        args, stages = parse(
            "ARG BASE=python:3.11-slim\nFROM ${BASE} AS b\nRUN true\nFROM ${BASE}\n"
            "RUN apt-get update \\\n && apt-get install -y gcc\nCMD python -m service\n")
        assert expand(stages[1].base, args) == "python:3.11-slim"
        assert BUILD_TOOLS.search(stages[1].all("RUN")[0])
        with pytest.raises(json.JSONDecodeError):
            json.loads(stages[1].all("CMD")[0])


def test_parser_reads_the_repository_dockerfile_completely() -> None:
    text = DOCKERFILE.read_text()
    _, stages = parse(text)
    counted = sum(len(s.instructions) + 1 for s in stages)
    expected = len(re.findall(r"^(?!\s*#)\s*[A-Z]+\s", text, re.MULTILINE)) - 1  # minus the global ARG
    assert counted == expected
    assert Path(DOCKERFILE).read_text().startswith("# syntax=docker/dockerfile:1")
