"""docs/bad-input.md shows real answers: every row of its first table (the default
limits) is what the server answers today."""

import importlib.util
import pathlib
import sys

import grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _table_script():
    spec = importlib.util.spec_from_file_location("bad_input_table", ROOT / "benchmarks" / "bad_input.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_default_table_matches_the_server(server):
    table = _table_script()
    document = (ROOT / "docs" / "bad-input.md").read_text()
    default = table.SECTIONS[0]
    assert not default.settings  # the session server has the default limits
    with grpc.insecure_channel(server.target) as channel:
        rows = [table.ask_sync(channel, case) for case in default.cases]
    missing = [row for row in rows if row not in document]
    assert not missing, "docs/bad-input.md is out of date; rerun benchmarks/bad_input.py:\n" + "\n".join(missing)
