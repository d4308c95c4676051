"""Generate the Python code for proto/monge/v1 with the pinned grpcio-tools.

    python proto/generate.py            # writes next to the .proto files
    python proto/generate.py --out DIR  # writes DIR/monge/v1/* (the drift test uses this)

The output is committed; tests/test_generated_code.py regenerates it and fails on any
difference, so change the .proto files, run this, and commit both.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import pathlib
import sys

PINNED_GRPCIO_TOOLS = "1.85.1"  # keep equal to the pin in pyproject.toml's test extra
PROTO_ROOT = pathlib.Path(__file__).resolve().parent


def generate(out: pathlib.Path) -> list[pathlib.Path]:
    installed = importlib.metadata.version("grpcio-tools")
    if installed != PINNED_GRPCIO_TOOLS:
        raise SystemExit(
            f"grpcio-tools {installed} is installed; the generated code is pinned to "
            f"{PINNED_GRPCIO_TOOLS} (pip install grpcio-tools=={PINNED_GRPCIO_TOOLS})"
        )
    from grpc_tools import protoc

    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.glob("monge/v1/*.proto"))
    well_known = pathlib.Path(protoc.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out / "monge" / "v1").glob("*_pb2*.py*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=PROTO_ROOT)
    written = generate(parser.parse_args().out)
    print("\n".join(str(p) for p in written), file=sys.stderr)


if __name__ == "__main__":
    main()
