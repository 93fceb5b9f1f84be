"""The suite's own fixtures: what a developer without the real backends (or without an S3 server) gets."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _venv_without_s3_server(where: Path) -> Path:
    """This interpreter's environment less the S3 server (`weed`): a venv sharing the same site-packages."""
    home = Path(sys.executable).parent
    where.mkdir()
    (where / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text())
    (where / "bin").mkdir()
    (where / "bin" / "python").symlink_to(home / "python")
    site = Path(sysconfig.get_paths()["purelib"])
    (where / site.relative_to(sys.prefix)).parent.mkdir(parents=True)
    (where / site.relative_to(sys.prefix)).symlink_to(site)
    assert not (where / "bin" / "weed").exists()
    return where / "bin" / "python"


def test_real_backend_tests_skip_when_turned_off_even_without_an_s3_server(tmp_path: Path) -> None:
    python = _venv_without_s3_server(tmp_path / "venv")
    run = subprocess.run(
        [str(python), "-m", "pytest", "tests/core/test_kv.py", "-k", "real", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env={**os.environ, "DEVPYNODE_TEST_REAL": "off"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0 and "skipped" in summary and "error" not in summary, run.stdout + run.stderr
