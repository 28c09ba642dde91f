"""No secret reaches the database: not in rows, not in the file, not in PostgreSQL's tables."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from comfyfleet.models.vast import Instance, Offer
from comfyfleet.state.db import Database
from comfyfleet.state.rows import EventKind
from comfyfleet.state.scrub import REDACTED

TABLES = ("create_intents", "instances", "instance_events")


def _stored_text(db: Database, raw_url: URL) -> str:
    """Everything the database holds, as the backend stores it."""
    if db.path is not None:
        files = [db.path, db.path.with_name(db.path.name + "-wal")]
        return "".join(p.read_bytes().decode("latin-1") for p in files if p.exists())
    engine = create_engine(raw_url)
    try:
        with engine.connect() as conn:
            return "\n".join(
                str(row[0])
                for table in TABLES
                for row in conn.execute(text(f"SELECT t::text FROM {table} t"))
            )
    finally:
        engine.dispose()


def test_secrets_in_requests_events_and_errors_are_scrubbed(
    db: Database, offer: Offer, raw_url: URL
) -> None:
    web, api, hf, pw = (f"cfsecret{uuid.uuid4().hex}" for _ in range(4))
    request: dict[str, Any] = {
        "image": "vastai/comfy:v0.3.64-cuda-12.8",
        "disk": 40,
        "runtype": "ssh_direct",
        "env": {
            "-p 8188:8188": "1",
            "OPEN_BUTTON_TOKEN": web,
            "WEB_PASSWORD": pw,
            "PROVISIONING_SCRIPT": f"https://example.test/p.sh?sig={hf}",
        },
        "onstart": f"export HF_TOKEN={hf}\nentrypoint.sh",
        "image_login": f"-u me -p {pw} docker.io",
        "headers": {"Authorization": f"Bearer {api}"},
    }
    intent = db.intents.record(pool="manual", offer=offer, request=request, name="safe")
    row = db.instances.find("safe")
    failure = f"PUT https://console.vast.ai/api/v0/asks/1/?api_key={api} failed"
    db.intents.fail(intent.id, failure, cleaned=False, vast_id=31_000_001)
    db.instances.upsert_from_vast(
        Instance.model_validate(
            {
                "id": 31_000_001,
                "label": intent.label,
                "actual_status": "created",
                "status_msg": f"Error response from daemon: login failed for token={web}",
                "extra_env": [["OPEN_BUTTON_TOKEN", web]],
                "jupyter_token": web,
            }
        )
    )
    db.instances.record_event(
        row.id,
        EventKind.ERROR,
        detail={"url": f"http://127.0.0.1:8188/?token={web}", "api_key": api},
    )

    stored = _stored_text(db, raw_url)
    returned = repr(
        (db.intents.get(intent.id), db.instances.get(row.id), db.instances.events(row.id))
    )
    for secret in (web, api, hf, pw):
        assert secret not in stored
        assert secret not in returned
    # What is not secret survives, so the records stay useful.
    kept = db.intents.get(intent.id).request
    assert kept["image"] == "vastai/comfy:v0.3.64-cuda-12.8" and kept["disk"] == 40
    assert kept["env"]["-p 8188:8188"] == "1"
    assert kept["env"]["OPEN_BUTTON_TOKEN"] == REDACTED
    assert set(kept["env"]) == set(request["env"])  # variable names are kept
    assert "entrypoint.sh" in kept["onstart"]
    assert "console.vast.ai" in (db.intents.get(intent.id).error or "")


def test_stored_text_reader_finds_plain_values(db: Database, offer: Offer, raw_url: URL) -> None:
    # Proves the check above can fail: a value that is not secret is found where it was put.
    marker = f"marker{uuid.uuid4().hex}"
    db.intents.record(pool="manual", offer=offer, request={"note": marker})
    assert marker in _stored_text(db, raw_url)
