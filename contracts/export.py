"""Write every contract's JSON Schema to `contracts/schemas/` (`python -m contracts.export`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from contracts.envelope import CloudEvent
from contracts.events import EVENTS
from contracts.live import InstanceActivity, NotificationPushed

SCHEMA_DIR = Path(__file__).parent / "schemas"

SCHEMAS: dict[str, type[BaseModel]] = {
    "cloudevent.json": CloudEvent,
    **{contract.schema_file: contract.model for contract in EVENTS.values()},
    "notification_pushed.v1.json": NotificationPushed,
    "instance_activity.v1.json": InstanceActivity,
}


def render(model: type[BaseModel]) -> str:
    schema: dict[str, Any] = model.model_json_schema(mode="serialization")
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for filename, model in SCHEMAS.items():
        (SCHEMA_DIR / filename).write_text(render(model))
        print(f"wrote {SCHEMA_DIR / filename}")


if __name__ == "__main__":
    main()
