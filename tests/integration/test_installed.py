"""The installed framework: an sdist, a wheel built from it, installed offline outside the checkout.

The wheel goes into an isolated site folder that is put first on PYTHONPATH (the test venv
still provides the dependencies), and every command runs from a directory outside the
checkout, so nothing can fall back to the repository's own recipes/ or configs/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(args, cwd, env=None, timeout=300):
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site folder, a working directory outside the checkout, env) for the installed argsfw."""
    root = tmp_path_factory.mktemp("installed")
    dist, site, cwd = root / "dist", root / "site", root / "elsewhere"
    cwd.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = _run([sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", dist], REPO)
    assert build.returncode == 0, build.stderr
    (sdist,) = dist.glob("argsfw-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("/recipes/tiny_sft.yaml") for n in names)
    assert any(n.endswith("/configs/argsfw.yaml") for n in names)
    # The wheel is built from the sdist (as pip does for a source install), with no network.
    wheel = _run(
        [*pip, "wheel", "--no-index", "--no-deps", "--no-build-isolation", "-w", dist, sdist], root
    )
    assert wheel.returncode == 0, wheel.stderr
    (whl,) = dist.glob("argsfw-*.whl")
    with zipfile.ZipFile(whl) as zf:
        inside = zf.namelist()
    assert "argsfw/recipes/llama7b_args.yaml" in inside
    assert "argsfw/configs/strategy/deepspeed_zero3.yaml" in inside
    inst = _run([*pip, "install", "--no-index", "--no-deps", "--target", site, whl], root)
    assert inst.returncode == 0, inst.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", ARGSFW_RECIPE_PATH="")
    return site, cwd, env


def _argsfw(installed, *args):
    _, cwd, env = installed
    return _run([sys.executable, *args], cwd, env)


def test_the_installed_package_is_the_one_imported(installed):
    site, _, _ = installed
    out = _argsfw(installed, "-c", "import argsfw.config.compose as c; print(c.RECIPE_DIR)")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == site / "argsfw" / "recipes"


@pytest.mark.parametrize(
    ("entry", "listed"),
    [
        ("fit", ["opt1.3b_rm", "llama7b_sft", "tiny_sft"]),
        ("predict", ["llama7b_args", "tiny_args"]),
    ],
)
def test_help_lists_the_recipes(installed, entry, listed):
    out = _argsfw(installed, "-m", f"argsfw.{entry}", "--help")
    assert out.returncode == 0, out.stderr
    recipes_line = next(line for line in out.stdout.splitlines() if "recipes:" in line)
    assert all(name in recipes_line for name in listed), recipes_line


@pytest.mark.parametrize(
    ("entry", "recipe", "needle"),
    [
        ("fit", "opt1.3b_rm", "stage: rm"),
        ("predict", "llama7b_args", "argsearch/llama-7b-rm-float32"),
        ("fit", "tiny_sft", "stage: sft"),
    ],
)
def test_print_config_outside_the_checkout(installed, entry, recipe, needle):
    out = _argsfw(installed, "-m", f"argsfw.{entry}", f"recipe={recipe}", "print_config=true")
    assert out.returncode == 0, out.stderr
    assert f"recipe: {recipe}" in out.stdout and needle in out.stdout


def test_a_users_recipe_file_runs_with_the_installed_package(installed):
    _, cwd, _ = installed
    (cwd / "mine.yaml").write_text(
        "# @package _global_\n# Command:  python -m argsfw.fit recipe=mine.yaml\n"
        "# Needs:    a laptop CPU\nstage: sft\noptim:\n  lr: 1.0e-5\n"
    )
    out = _argsfw(installed, "-m", "argsfw.fit", "recipe=mine.yaml", "print_config=true")
    assert out.returncode == 0, out.stderr
    assert "recipe: mine" in out.stdout and "lr: 1.0e-05" in out.stdout
