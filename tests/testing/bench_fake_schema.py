"""Measure FakeApiServer writes per second with and without a CRD schema (not a test; run it).

    python tests/testing/bench_fake_schema.py [N]

Creates N ~2 KB Widgets, then merge-patches each once, through the Python API (the same
code path as HTTP writes, minus HTTP), once with the permissive default schema and once
with a schema that prunes, defaults and validates every field.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from crwatch.testing import FakeApiServer

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 1},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "replicas": {"type": "integer", "default": 1},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "maxLength": 64},
                            "value": {"type": "string"},
                        },
                    },
                },
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def widget(i: int) -> dict[str, Any]:
    """Build a ~2 KB Widget."""
    return {
        "metadata": {"name": f"w{i}", "labels": {"app": "shop", "tier": "edge"}},
        "spec": {
            "size": i,
            "color": "red",
            "labels": {f"key-{j}": "v" * 20 for j in range(10)},
            "items": [{"name": f"item-{j}", "value": "x" * 60} for j in range(20)],
        },
    }


async def main(n: int) -> None:
    """Run both measurements."""
    print(f"object: {len(orjson.dumps(widget(1)))} bytes")
    for label, schema in (("no schema", None), ("schema", SCHEMA)):
        async with FakeApiServer(history_size=n) as server:
            widgets = server.register_crd(
                group="example.com", version="v1", plural="widgets", kind="Widget", schema=schema
            )
            bodies = [widget(i) for i in range(n)]
            start = time.perf_counter()
            for body in bodies:
                server.create(widgets, body)
            created = time.perf_counter() - start
            start = time.perf_counter()
            for i in range(n):
                server.patch(widgets, f"w{i}", {"spec": {"size": i + 1}})
            patched = time.perf_counter() - start
            print(f"{label:>9}: {n / created:,.0f} creates/s, {n / patched:,.0f} patches/s")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
