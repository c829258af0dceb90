"""The documentation runs as it stands: every ```python block of README.md and
docs/*.md, found automatically, and every relative link of the pages.

A block whose first line is ``# file: NAME.py`` is a module a user would save:
all such blocks are written to one folder, and each is exercised there. By
default that means importing it and loading every function annotated to return
a ``DescribedDataset`` through :func:`lazy_hasty.datasets.load`, with the config
values ``main.py`` would pass; a file named in ``FILE_CHECKS`` is exercised by
its own check instead (``my_difficulty.py``: through ``experiments/seeds.py``).
Every other python block is exec'd as is, from that folder; one matched by a
marker of ``OUTPUT_CHECKS`` also has its printed output checked. Each block
runs once. Keep blocks cheap: commands belong in ```bash blocks.
"""

import contextlib
import glob
import importlib.util
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from configs import difficulty_base
from lazy_hasty import datasets, difficulty
from lazy_hasty.analysis import plots
from lazy_hasty.engine import records

from tests import ROOT, checks
NOISE = os.path.join(ROOT, "configs", "digits_noise.py")
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                               for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINKED_PAGES = PAGES + ["benchmarks/README.md"]
FILE_LINE = re.compile(r"#\s*file:\s*(\S+\.py)\s*$")


def _blocks(lang):
    """``(page, line, code)`` of every fenced ``lang`` block of the pages."""
    found = []
    for page in PAGES:
        with open(os.path.join(ROOT, page)) as f:
            text = f.read()
        for match in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.S | re.M):
            line = text.count("\n", 0, match.start()) + 1
            found.append((page, line, match.group(1)))
    return found


def _file_name(code):
    """``NAME.py`` for a ``# file: NAME.py`` block, else None."""
    match = FILE_LINE.match(code.splitlines()[0]) if code.strip() else None
    return match.group(1) if match else None


BLOCKS = _blocks("python")
FILE_BLOCKS = [b for b in BLOCKS if _file_name(b[2])]
CODE_BLOCKS = [b for b in BLOCKS if not _file_name(b[2])]


def _ids(blocks):
    return [f"{page}:{line}" for page, line, _ in blocks]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A user's folder holding every ``# file:`` block, written before any runs."""
    path = tmp_path_factory.mktemp("docs")
    names = [_file_name(code) for _, _, code in FILE_BLOCKS]
    assert len(names) == len(set(names)), f"two blocks write the same file: {names}"
    for _, _, code in FILE_BLOCKS:
        (path / _file_name(code)).write_text(code)
    return path


@contextlib.contextmanager
def _inside(path):
    """Runs with ``path`` as the current directory and first on ``sys.path``."""
    cwd, sys_path = os.getcwd(), list(sys.path)
    os.chdir(path)
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = sys_path


# ---------------------------------------------------------------- file blocks

def _check_my_difficulty(folder, name, code):
    """docs/extending.md's dataset, through seeds.py as its commands run it (one seed):
    the finding docs/results.md reports, alpha = 1 hastening towards typical digits."""
    assert len(code.strip().splitlines()) <= 41          # 40 lines + the "# file:" line
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "seeds.py"), f"--config={NOISE}",
         "--config.dataset=my_difficulty:typicality", "--seeds=1", "--workdir=runs"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = folder / "runs"
    files = {p.name for p in (runs / "seed_0").iterdir()}
    assert {"metrics.jsonl", "summary.json", "fig2.png", "COMPLETED"} <= files
    summary = json.loads((runs / "seed_0" / "summary.json").read_text())
    assert summary["spec"]["name"] == "typicality"
    assert (summary["easy_group"], summary["hard_group"]) == ("train/typical",
                                                             "train/atypical")
    for statistic in ("hastiness", "hard_advantage"):         # both intervals above 0
        assert 0 < summary[f"{statistic}_interval"][0] < summary[statistic], statistic
    first = json.loads((runs / "seed_0" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"train/typical/accuracy", "train/atypical/accuracy",
            "test/all/accuracy"} <= set(first)
    aggregate = json.loads((runs / "seeds_summary.json").read_text())
    assert aggregate["spec"]["name"] == "typicality"
    assert aggregate["hastiness"]["num_seeds"] == 1
    spec = difficulty.DifficultySpec.from_dict(summary["spec"])
    rows = records.read_jsonl(str(runs / "seed_0" / "metrics.jsonl"))
    checks.check_figure(str(runs / "fig4.png"), lambda path: plots.plot_seed_bands(
        path, [rows], regimes=["alpha=1", "alpha=100"], panels=plots.seed_panels(spec),
        x_key=spec.progress_key, decreasing=spec.decreasing))


FILE_CHECKS = {"my_difficulty.py": _check_my_difficulty}


def _load_datasets(folder, name, code):
    """Imports ``name`` and loads each of its dataset functions as main.py would."""
    path = str(folder / name)
    spec = importlib.util.spec_from_file_location(name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    with _inside(folder):
        spec.loader.exec_module(module)
        values = difficulty_base.get_config().to_dict()
        for attr, fn in vars(module).items():
            returns = getattr(fn, "__annotations__", {}).get("return")
            if (callable(fn) and getattr(fn, "__module__", None) == module.__name__
                    and "DescribedDataset" in str(returns)):
                data = datasets.load(f"{path}:{attr}", values)
                assert isinstance(data, datasets.DescribedDataset), attr


@pytest.mark.parametrize("page, line, code", FILE_BLOCKS, ids=_ids(FILE_BLOCKS))
def test_file_block(page, line, code, folder):
    name = _file_name(code)
    FILE_CHECKS.get(name, _load_datasets)(folder, name, code)


# ---------------------------------------------------------------- code blocks

def _check_own_model(code, printed):
    """docs/extending.md's library snippet: the three regimes on a user's Flax model."""
    assert len([line for line in code.splitlines() if line.strip()]) <= 20
    rows = {line.split(":")[0]: [float(v) for v in re.findall(r"\d+\.\d+", line)]
            for line in printed.splitlines()}
    assert set(rows) == {"alpha=1", "alpha=100", "linearized"}
    assert rows["linearized"][1:] == [1.0, 1.0]             # the linear model never moves
    assert rows["alpha=1"][1] < rows["alpha=100"][1]        # feature learning moves the NTK
    assert rows["alpha=100"][0] == pytest.approx(rows["linearized"][0], abs=2e-3)


OUTPUT_CHECKS = {"class Net(nn.Module)": _check_own_model}


@pytest.mark.parametrize("page, line, code", CODE_BLOCKS, ids=_ids(CODE_BLOCKS))
def test_code_block(page, line, code, folder):
    printed = io.StringIO()
    with _inside(folder), contextlib.redirect_stdout(printed):
        exec(compile(code, f"{page}:{line}", "exec"), {"__name__": "__docs__"})
    for marker, check in OUTPUT_CHECKS.items():
        if marker in code:
            check(code, printed.getvalue())


def test_every_check_has_its_block():
    """A check whose block was renamed or removed fails here instead of going quiet."""
    assert set(FILE_CHECKS) <= {_file_name(code) for _, _, code in FILE_BLOCKS}
    for marker in OUTPUT_CHECKS:
        assert any(marker in code for _, _, code in CODE_BLOCKS), marker


# ---------------------------------------------------------------------- links

def _slug(heading):
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower().replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path):
    with open(path) as f:
        text = re.sub(r"^```.*?^```", "", f.read(), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("page", LINKED_PAGES)
def test_relative_links_resolve(page):
    """Every relative link and image of the page names a file (and heading) that exists."""
    path = os.path.join(ROOT, page)
    with open(path) as f:
        text = re.sub(r"^```.*?^```", "", f.read(), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue                                   # https:, mailto:
        file, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(resolved):
            broken.append(target)
        elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
            broken.append(target)
    assert not broken, f"{page}: broken links {broken}"
