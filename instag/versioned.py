"""Reading the versioned JSON documents of the on-disk formats (dataset, avatar, UMF, checkpoint): DESIGN §4.

Every format stamps `{"format": NAME, "format_version": N}`; a reader refuses another format with an
`InputError` and a version it does not know with a `FormatVersionError`, each naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instag.errors import FormatVersionError, InputError


def read_versioned_json(path: Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """The JSON object at `path`, checked to be format `fmt` at `version`; `what` names it in messages."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable {what} ({exc})") from exc
    found = doc.get("format") if isinstance(doc, dict) else None
    if found != fmt:
        raise InputError(f"{path}: not an instag {what} (format {found!r})")
    if doc.get("format_version") != version:
        raise FormatVersionError(f"{path}: {what} format version {doc.get('format_version')!r} is unknown to this "
                                 f"instag (it reads version {version})")
    return doc
