"""benchmarks/gpu_check.sh, run here so that its first run on a GPU machine is not its first run:
on the emulated backend, as a dry run of the real device's commands, with a hanging test and a
short budget; and the wheel list gpu_prepare.sh brings along.

Not marked ``gpu``: the script runs ``pytest -m gpu`` itself.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_wheels  # noqa: E402

SLEEPER = """
import time
import pytest

@pytest.mark.gpu
def test_emulated_passes():
    pass

@pytest.mark.gpu
def test_emulated_hangs():
    time.sleep(60)
"""


def run_check(out: Path, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    base.update(PYTHON=sys.executable, GPU_CHECK_DEVICE="emulated", GPU_CHECK_WHEELS="/nonexistent")
    base.update(env)
    return subprocess.run(["bash", str(SCRIPT), str(out)], env=base, capture_output=True, text=True,
                          timeout=300)


def summary(out: Path) -> dict[str, str]:
    lines = (out / "summary.txt").read_text().splitlines()
    return {line.split(":")[0]: line.split(":", 1)[1].strip() for line in lines}


def emulator_present() -> bool:
    from emulation.backend import compiler
    return bool(compiler())


@pytest.mark.skipif(not emulator_present(), reason="no GCC C++ compiler for the emulated GPU")
def test_an_emulated_run_writes_every_log_the_device_tool_brings_back(tmp_path):
    out = tmp_path / "out"
    done = run_check(out, GPU_CHECK_TESTS="tests/test_gpu_update.py",
                     GPU_CHECK_ZOO_ARGS="--nets lenet --train-nets lenet --batch 2 --repeats 1 "
                                        "--round-time 0 --warmup 0 --no-memory")
    steps = summary(out)
    assert done.returncode == 0, (done.stdout, done.stderr, steps)
    assert list(steps) == ["env", "install", "import", "tests", "gpu_train", "zoo_nets"]
    assert steps["install"].startswith("skipped (no wheels folder")
    assert all(steps[k].startswith("ok") for k in ("env", "import", "tests")), steps
    torch = importlib.util.find_spec("torch") is not None  # the bench extra: absent in CI
    assert steps["zoo_nets"].startswith("ok" if torch else "skipped (no torch"), steps
    files = sorted(p.name for p in out.iterdir())
    assert files == ["env.log", "summary.txt", "tests.log", "tests.xml"] + ["zoo_nets.log"] * torch
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in files)  # what comes back
    suite = ET.parse(out / "tests.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) > 10 and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert not torch or "| lenet | infer |" in (out / "zoo_nets.log").read_text()


def test_a_dry_run_names_the_real_devices_commands(tmp_path):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    out = tmp_path / "out"
    done = run_check(out, GPU_CHECK_DEVICE="cuda", GPU_CHECK_DRY_RUN="1", GPU_CHECK_WHEELS=str(wheels),
                     TRAINNET_DATA=str(tmp_path / "data"))
    assert done.returncode == 0, done.stdout + done.stderr
    steps = summary(out)
    assert list(steps) == ["env", "install", "import", "tests", "gpu_train", "zoo_nets"]
    install = (out / "install.log").read_text()
    assert f"pip install -q --no-index --find-links {wheels} --no-build-isolation" in install
    assert install.rstrip().endswith(f"-e {ROOT}[dev]")
    tests = (out / "tests.log").read_text()
    assert "-m pytest -m gpu -k not emulated --ff" in tests and "-p gpu_check_alarm" in tests
    assert f"--junitxml={out}/tests.xml tests" in tests
    train = (out / "gpu_train.log").read_text()
    assert "--cases lenet64,lenet1024 --iterations" in train and "--no-compile" in train
    assert "zoo_nets.py --device cuda --nets lenet," in (out / "zoo_nets.log").read_text()
    assert len(list(out.iterdir())) <= 8


def test_a_hanging_test_fails_alone_and_the_run_goes_on(tmp_path):
    (tmp_path / "test_sleeper.py").write_text(SLEEPER)
    env = dict(os.environ, GPU_CHECK_TEST_SECONDS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "gpu_check_alarm",
                           "-p", "no:cacheprovider", str(tmp_path / "test_sleeper.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    assert "TestTimedOut: over the bound of 1 s per test phase (GPU_CHECK_TEST_SECONDS)" in done.stdout


def test_the_budget_bounds_a_step_and_skips_what_has_no_time_left(tmp_path):
    (tmp_path / "test_sleeper.py").write_text(SLEEPER)
    out = tmp_path / "out"
    done = run_check(out, GPU_CHECK_BUDGET="30", GPU_CHECK_TESTS=str(tmp_path / "test_sleeper.py"))
    steps = summary(out)
    assert done.returncode == 1
    # on a loaded machine the first steps may leave the tests no time at all
    assert steps["tests"].startswith(("timed out", "skipped (no time left)")), steps
    assert steps["zoo_nets"] == "skipped (no time left)"
    if steps["tests"].startswith("timed out"):
        assert int(re.search(r", (\d+) s of", steps["tests"]).group(1)) <= 30


def test_the_wheels_are_the_dependencies_the_device_lacks_pinned_to_ours(tmp_path):
    wanted = gpu_wheels.requirements()
    names = {r.split("==")[0] for r in wanted}
    assert {"pydantic", "safetensors", "protobuf", "pillow", "h5py", "lmdb"} <= names
    assert not names & (gpu_wheels.DEVICE_HAS | {"trainnet"})
    assert all(re.fullmatch(r"[a-z0-9.-]+==[\w.+]+", r) for r in wanted)
    for name in ("pydantic-2.1-py3-none-any.whl", "pydantic-2.2-py3-none-any.whl",
                 "lmdb-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                 "numpy-2.0-cp312-cp312-manylinux_2_17_x86_64.whl",
                 "safetensors-0.8-cp310-abi3-manylinux_2_17_x86_64.whl"):
        (tmp_path / name).write_bytes(b"")
    assert gpu_wheels.prune(tmp_path) == ["numpy-2.0-cp312-cp312-manylinux_2_17_x86_64.whl"]
    problems = gpu_wheels.check_wheels(tmp_path)
    assert problems == ["lmdb-1.0-cp311-cp311-manylinux_2_17_x86_64.whl: for cp311, not cp312",
                        "pydantic: two versions (2.1, 2.2): keep one"]
