"""The package's layering, checked: no import cycle, and no import from a lower layer
to a higher one. Every import counts (top level, inside functions, under
``TYPE_CHECKING``). Run by ``.ci/run`` and by ``tests/test_layers.py``.

Usage: python tools/layers.py  (exit 1, with each violation, when the rule is broken)

A module may import modules of its own layer or of lower ones. The layers, bottom up
(docs/architecture.md draws them):

0. leaves: names, records, settings, encodings, errors, metrics; import nothing above.
1. object core: live objects and their dispatcher, DurableState, DurableWebSocket,
   storage, written against the protocols of ``ports`` (never the runtime).
2. backends: the local transport, the fan-out, the alarm scheduler, the session layers
   and everything about Redis (``django_durable.redis``).
3. composition root: ``runtime`` (builds and wires the above), and the ``session``
   package's lazy ``RedisSessionLayer``.
4. public edges: the consumer class, gateways, stubs, status, views, admin, commands,
   testing helpers, lifespan, and the package's lazy ``__init__``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "django_durable"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

LAYERS: dict[str, list[str]] = {
    "leaves": [
        "alarms",
        "asgi_server",
        "autoresponse",
        "classes",
        "conf",
        "dbthread",
        "delivery",
        "encoding",
        "events",
        "exceptions",
        "framing",
        "gates",
        "limits",
        "mailbox",
        "metrics",
        "models",
        "names",
        "outgoing",
        "redis.keys",
        "redis.scripts",
        "registry",
        "rpc",
        "scopes",
        "session.base",
        "shards",
    ],
    "core": [
        "calls",
        "dispatcher",
        "flushing",
        "handling",
        "live",
        "objects",
        "overload",
        "ports",
        "resume",
        "sockets",
        "state",
        "storage",
        "storage_rows",
        "storage_values",
        "websocket",
    ],
    "backends": [
        "fanout",
        "local_groups",
        "redis",
        "redis.copies",
        "redis.couriers",
        "redis.forwarding",
        "redis.gateway_side",
        "redis.groups",
        "redis.held",
        "redis.history",
        "redis.inbox",
        "redis.layer",
        "redis.leases",
        "redis.records",
        "redis.maintenance",
        "redis.messages",
        "redis.outbox",
        "redis.owners",
        "redis.parts",
        "redis.pending_frames",
        "redis.remote_calls",
        "redis.stamps",
        "redis.status",
        "redis.session_cache",
        "redis.to_sockets",
        "redis.transport",
        "scheduler",
        "session.memory",
        "transport",
    ],
    "root": ["runtime", "session"],
    "edges": [
        "",
        "admin",
        "apps",
        "checks",
        "cluster",
        "consumer",
        "daphne_timers",
        "gateway",
        "lifespan",
        "management",
        "management.commands",
        "management.commands.durable_status",
        "outside",
        "prometheus",
        "session.redis",
        "shutdown",
        "status",
        "stubs",
        "testing",
        "views",
    ],
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    files = sorted(root.rglob("*.py"))
    return {module_name(f, root): f for f in files if "migrations" not in f.parts}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from . import conf`` imports the module conf (the name, when it is no
            # module, is a name of ``target``'s).
            targets = [
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target
                for alias in node.names
            ]
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != name:
                found.add(target)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def violations(root: Path = ROOT, layers: dict[str, list[str]] = LAYERS) -> list[str]:
    edges = graph(root)
    package = root.name
    rank: dict[str, int] = {}
    for level, names in enumerate(layers.values()):
        for short in names:
            rank[f"{package}.{short}" if short else package] = level
    layer_names = list(layers)
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(edges)]
    for name in sorted(edges):
        if name not in rank:
            problems.append(f"{name}: in no layer (add it to LAYERS in tools/layers.py)")
            continue
        for target in sorted(edges[name]):
            if target in rank and rank[target] > rank[name]:
                problems.append(
                    f"{name} ({layer_names[rank[name]]}) imports {target} "
                    f"({layer_names[rank[target]]}): a lower layer may not import a higher one"
                )
    problems += [f"{name}: listed in LAYERS but not a module" for name in rank if name not in edges]
    return problems


def main() -> int:
    problems = violations()
    for problem in problems:
        print(problem)
    print(f"{len(graph())} modules, {len(problems)} layering problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
