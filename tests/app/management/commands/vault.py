"""``manage.py vault ROOM METHOD [JSON ARGS...]``: a stub call from a management command."""

from __future__ import annotations

import json

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandParser

from tests.app.storage_consumers import Vault


class Command(BaseCommand):
    help = "Call an @rpc method of a Vault object and print the JSON result."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room")
        parser.add_argument("method")
        parser.add_argument("call_args", nargs="*", metavar="ARG")

    def handle(self, *args: str, **options: str) -> None:
        stub = Vault.get(options["room"])
        call_args = [json.loads(a) for a in options["call_args"]]
        result = async_to_sync(getattr(stub, options["method"]))(*call_args)
        self.stdout.write(json.dumps({"result": result}))
