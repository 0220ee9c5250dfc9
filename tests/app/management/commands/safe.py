"""``python -m django safe ROOM METHOD [JSON ARGS...]``: a stub call to a ``Safe`` object.

Prints one JSON line: ``{"result": ..., "pid": <this process>}``, or ``{"error": <class
name>, "message": ..., "pid": ...}`` when the call raised. ``--roundtrip`` calls
``echo`` with ``ROUNDTRIP_VALUE`` and prints whether it came back equal, type for type.
"""

from __future__ import annotations

import json
import os
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandParser

from tests.app.storage_consumers import ROUNDTRIP_VALUE, Safe


class Command(BaseCommand):
    help = "Call an @rpc method of a Safe object and print the JSON result."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room")
        parser.add_argument("method", nargs="?", default="echo")
        parser.add_argument("call_args", nargs="*", metavar="ARG")
        parser.add_argument("--roundtrip", action="store_true")

    def handle(self, *args: str, **options: Any) -> None:
        stub = Safe.get(options["room"])
        out: dict[str, Any] = {"pid": os.getpid()}
        try:
            if options["roundtrip"]:
                result = async_to_sync(stub.echo)(*ROUNDTRIP_VALUE)
                out["equal"] = list(result["args"]) == list(ROUNDTRIP_VALUE)
                out["types_returned"] = [type(a).__name__ for a in result["args"]]
                out["types_seen"] = result["types"]
            else:
                call_args = [json.loads(a) for a in options["call_args"]]
                result = async_to_sync(getattr(stub, options["method"]))(*call_args)
                out["result"] = json.loads(json.dumps(result, default=repr))
        except Exception as exc:
            out.update(error=type(exc).__name__, message=str(exc))
        self.stdout.write(json.dumps(out))
