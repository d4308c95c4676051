"""buf lint (STANDARD + COMMENTS) passes on proto/. .ci/run installs buf from npm."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _buf():
    local = ROOT / "node_modules" / ".bin" / "buf"
    return str(local) if local.exists() else shutil.which("buf")


@pytest.mark.skipif(_buf() is None, reason="buf not installed (npm install @bufbuild/buf)")
def test_buf_lint_passes():
    run = subprocess.run([_buf(), "lint"], cwd=ROOT / "proto", capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
