"""The committed generated code is exactly what the pinned generator produces."""

import filecmp
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_generated_code_is_up_to_date(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    fresh = sorted(p.name for p in (tmp_path / "monge" / "v1").glob("*_pb2*.py*"))
    committed = sorted(p.name for p in (ROOT / "proto" / "monge" / "v1").glob("*_pb2*.py*"))
    assert fresh == committed, "generated files differ in name: run python proto/generate.py"
    for name in fresh:
        same = filecmp.cmp(tmp_path / "monge" / "v1" / name, ROOT / "proto" / "monge" / "v1" / name, shallow=False)
        assert same, f"{name} is stale: run python proto/generate.py and commit"
