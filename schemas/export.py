"""Export the contract as JSON Schema, for consumers written in other languages.

python -m schemas.export            # rewrite schemas/jsonschema/*.json
python -m schemas.export --check    # exit 1 if the committed files are stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from schemas.batch import EventBatch
from schemas.events import SCHEMA_VERSION, Envelope
from schemas.receipts import Receipt
from schemas.watermark import Watermark

__all__ = ["SCHEMA_DIR", "json_schemas", "main"]

SCHEMA_DIR = Path(__file__).parent / "jsonschema"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document."""
    out: dict[str, dict[str, Any]] = {}
    models: tuple[tuple[str, Any], ...] = (
        ("envelope", Envelope),  # one event per record on the events topic
        ("batch", EventBatch),  # or many under one signature (publish_many)
        ("watermark", Watermark),  # the receipts topic: applied-through offsets
        ("receipt", Receipt),
    )
    for name, model in models:
        schema = model.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://revocast.dev/schemas/{name}.v{SCHEMA_VERSION}.json"
        out[f"{name}.v{SCHEMA_VERSION}.json"] = schema
    return out


def _render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed files are stale")
    args = parser.parse_args(argv)
    stale = []
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, schema in json_schemas().items():
        path = SCHEMA_DIR / name
        text = _render(schema)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(
            f"stale JSON Schema: {', '.join(stale)}; run `python -m schemas.export`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
