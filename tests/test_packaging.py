"""Installed, everything lives under `monge`: no top-level server or client package."""

import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_wheel_contains_only_the_monge_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("monge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"monge"}
    for module in ("monge/v1/service_pb2.py", "monge/solvers/sinkhorn/solver.py", "monge/server/app.py",
                   "monge/client/client.py", "monge/v1/service.proto"):
        assert module in names
    # Every hand-written module of every package (the package list in pyproject.toml is explicit).
    folders = {"proto/monge/v1": "monge/v1", "solvers": "monge/solvers", "server": "monge/server",
               "client": "monge/client"}
    missing = [f"{prefix}/{path.relative_to(ROOT / folder).as_posix()}" for folder, prefix in folders.items()
               for path in (ROOT / folder).rglob("*.py")
               if f"{prefix}/{path.relative_to(ROOT / folder).as_posix()}" not in names]
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "monge = monge.client.cli:main" in entry_points
