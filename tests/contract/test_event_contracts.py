"""Event contracts change only compatibly: JSON Schema snapshots of every (event_type, version).

A snapshot is never edited by hand. Adding an optional field is compatible: regenerate with
``make contract-snapshots`` and commit. Removing or retyping a field, or adding a required one,
fails here: publish a new version beside the old one instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from emporium_events.contracts import ALL_EVENTS, Event

SNAPSHOTS = Path(__file__).parent / "schemas"


def schema_of(event: type[Event]) -> dict:
    return event.model_json_schema(mode="serialization")


def snapshot_path(event: type[Event]) -> Path:
    return SNAPSHOTS / f"{event.event_type}.v{event.version}.json"


def incompatibilities(old: dict, new: dict, where: str = "") -> list[str]:
    """What a consumer built against ``old`` would trip over in ``new``."""
    problems = []
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})

    def resolve(schema: dict, defs: dict) -> dict:
        ref = schema.get("$ref")
        return defs[ref.rsplit("/", 1)[1]] if ref else schema

    def compare(o: dict, n: dict, path: str) -> None:
        o, n = resolve(o, old_defs), resolve(n, new_defs)
        for name, o_prop in o.get("properties", {}).items():
            n_prop = n.get("properties", {}).get(name)
            if n_prop is None:
                problems.append(f"{path}{name}: removed")
                continue
            o_res, n_res = resolve(o_prop, old_defs), resolve(n_prop, new_defs)
            if o_res.get("type") != n_res.get("type") or o_res.get("format") != n_res.get("format"):
                problems.append(f"{path}{name}: type changed {o_res.get('type')} -> {n_res.get('type')}")
            if "items" in o_res and "items" in n_res:
                compare(o_res["items"], n_res["items"], f"{path}{name}[].")
            if o_res.get("properties"):
                compare(o_res, n_res, f"{path}{name}.")
        added_required = set(n.get("required", [])) - set(o.get("required", []))
        for name in sorted(added_required):
            problems.append(f"{path}{name}: new required field")

    compare(old, new, where)
    return problems


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: f"{e.event_type}.v{e.version}")
def test_every_event_contract_is_compatible_with_its_published_snapshot(event):
    path = snapshot_path(event)
    current = schema_of(event)
    if os.environ.get("UPDATE_CONTRACT_SNAPSHOTS") == "1":
        if path.exists():
            assert not incompatibilities(json.loads(path.read_text()), current), (
                "incompatible: add a new version"
            )
        path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"no snapshot for {path.name}: run `make contract-snapshots` and commit it"
    assert incompatibilities(json.loads(path.read_text()), current) == []


def test_the_compatibility_check_catches_removed_retyped_and_newly_required_fields():
    old = {
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "string"}},
        "required": ["a"],
    }
    new = {
        "properties": {"a": {"type": "integer"}, "c": {"type": "string"}, "d": {"type": "string"}},
        "required": ["a", "d"],
    }
    assert incompatibilities(old, new) == [
        "a: type changed string -> integer",
        "b: removed",
        "d: new required field",
    ]


def test_adding_an_optional_field_is_compatible():
    old = {"properties": {"a": {"type": "string"}}, "required": ["a"]}
    new = {"properties": {"a": {"type": "string"}, "z": {"type": "string"}}, "required": ["a"]}
    assert incompatibilities(old, new) == []


def test_no_snapshot_is_orphaned():
    known = {snapshot_path(e).name for e in ALL_EVENTS}
    assert {p.name for p in SNAPSHOTS.glob("*.json")} <= known
