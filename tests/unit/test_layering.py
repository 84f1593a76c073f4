"""The import rules of the layout, read from the packages' real source.

Every ``import`` and ``from … import`` in ``xds/`` and ``redis_sentinel_watch/``
is collected with :mod:`ast` — at module level, inside functions (lazy
imports) and under ``TYPE_CHECKING`` alike — so a new module or a new import
is checked without anyone updating a list. The rules:

* ``xds.ads`` (the generic ADS protocol server) imports nothing of the rest of
  the project, of ``redis_sentinel_watch``, nor redis, prometheus_client,
  aiohttp or yaml: it serves whatever the cache holds;
* ``redis_sentinel_watch`` imports nothing from ``xds``;
* only ``redis_sentinel_watch`` imports redis-py;
* the subpackages of ``xds`` import each other without cycles.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("xds", "redis_sentinel_watch")
#: third-party libraries the protocol server must not know about
PROTOCOL_FORBIDDEN = ("redis", "redis_sentinel_watch", "prometheus_client", "aiohttp", "yaml")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``; relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # ``from xds.ads import cache`` imports a module too
                yield node.lineno, f"{target}.{alias.name}"


def all_imports() -> list[tuple[str, str, int, str]]:
    """(importing module, file, line, imported module) over both packages."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for line, target in imports_of(path):
                out.append((module_name(path), str(path.relative_to(ROOT)), line, target))
    return out


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(imports: list[tuple[str, str, int, str]]) -> list[str]:
    """Every broken rule, as ``file:line: importer imports target (rule)``."""
    bad = []
    for importer, file, line, target in imports:
        where = f"{file}:{line}: {importer} imports {target}"
        if within(importer, "xds.ads"):
            if within(target, "xds") and not within(target, "xds.ads"):
                bad.append(f"{where} (the protocol server knows nothing of the rest of xds)")
            if any(within(target, lib) for lib in PROTOCOL_FORBIDDEN):
                bad.append(f"{where} (the protocol server must not use it)")
        if within(importer, "redis_sentinel_watch") and within(target, "xds"):
            bad.append(f"{where} (redis_sentinel_watch never imports xds)")
        if within(target, "redis") and not within(importer, "redis_sentinel_watch"):
            bad.append(f"{where} (only redis_sentinel_watch imports redis)")
    return bad


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "xds" and len(parts) > 2 else None


def subpackage_cycles(imports: list[tuple[str, str, int, str]]) -> list[list[str]]:
    """Cycles in the graph of ``xds.<sub>`` → ``xds.<sub>`` imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for importer, _, _, target in imports:
        src, dst = subpackage(importer), subpackage(target)
        if src and dst and src != dst:
            graph[src].add(dst)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def test_the_walk_sees_real_imports() -> None:
    """The collector finds imports we know are there (so an empty result means clean)."""
    found = {(importer, target) for importer, _, _, target in all_imports()}
    assert ("xds.ads.server", "grpc") in found
    assert ("redis_sentinel_watch.redis_clients", "redis.asyncio") in found or any(
        i.startswith("redis_sentinel_watch") and within(t, "redis") for i, t in found
    )


def test_no_forbidden_import() -> None:
    """No module breaks a layering rule (each violation names file, line and rule)."""
    assert violations(all_imports()) == []


def test_rules_catch_a_forbidden_import() -> None:
    """A protocol module importing the service or redis, or the watcher importing xds,
    is reported: the check itself can fail."""
    planted = [
        ("xds.ads.stream", "xds/ads/stream.py", 1, "xds.service.config"),
        ("xds.ads.stream", "xds/ads/stream.py", 2, "yaml"),
        ("redis_sentinel_watch.io", "redis_sentinel_watch/io.py", 3, "xds.ads"),
        ("xds.ops.drain", "xds/ops/drain.py", 4, "redis.asyncio"),
    ]
    assert len(violations(planted)) == 4


def test_no_cycle_between_subpackages() -> None:
    """``xds.<sub>`` packages form a DAG (ops → service → resources → ads)."""
    assert subpackage_cycles(all_imports()) == []


def test_cycle_detection_can_fail() -> None:
    """A planted two-way import between subpackages is reported as a cycle."""
    planted = [
        ("xds.ads.stream", "", 1, "xds.resources.profiles"),
        ("xds.resources.profiles", "", 1, "xds.ads.stream"),
    ]
    assert subpackage_cycles(planted) == [["xds.ads", "xds.resources", "xds.ads"]]
