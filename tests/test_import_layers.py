"""The package's import graph: no cycles, layers only point down, no private names across modules.

Layers (a package may import its own modules and those of lower layers; equal layers may not
import each other): utils · audio · data · models · upstream · {interop, tokenizers} ·
{pretrain, eval, extract, features, hear} · cli · __main__. Strings in a table (the upstream
spec schemes, the family registry) are not imports: they are the plug-in points.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "audiossl"
LAYERS = [("", "utils"), ("audio",), ("data",), ("models",), ("upstream",), ("interop", "tokenizers"),
          ("pretrain", "eval", "extract", "features", "hear"), ("cli",), ("__main__",)]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        out[".".join(rel.parts).removesuffix(".__init__")] = path
    return out


def _imports(mod: str, path: Path):
    """``(imported module, names)`` for every ``audiossl`` import in ``path`` (any depth)."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "audiossl":
                    yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".")[: len(mod.split(".")) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "audiossl":
                yield target, [a.name for a in node.names]


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target, names in _imports(m, path):
            for t in [target] + [f"{target}.{n}" for n in names]:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m and not m.startswith(t + "."):
                    g[m].add(t)
    return g


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in g.items():
        for t in targets:
            pm, pt = _package(m), _package(t)
            if pt == pm or t == "audiossl":
                continue
            if RANK[pt] >= RANK[pm]:
                bad.append(f"{m} imports {t} ({pt} is not below {pm or 'audiossl'})")
    return sorted(bad)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def private_imports(mods: dict[str, Path]) -> list[str]:
    bad = []
    for m, path in mods.items():
        for target, names in _imports(m, path):
            bad += [f"{m} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__") and target != m]
    return sorted(bad)


def unjustified_lazy_imports(mods: dict[str, Path]) -> list[str]:
    """Imports below module level outside ``cli/`` whose lines carry no ``# lazy: <why>``.

    The cycle ``audiossl`` imports used to hold together is gone, and a cheap package (torch where the
    module has it anyway, tqdm, safetensors, the standard library) belongs at the top. One that stays
    inside a function must say why: an optional or slow package only one path needs, a plug-in resolved
    from a table, startup time of a command. ``cli/`` verbs are lazy by design; ``if TYPE_CHECKING:``
    blocks never run, and a module-level ``try: import x`` (an optional package) runs at import.
    """
    bad = []
    for m, path in mods.items():
        if m.split(".")[:2] == ["audiossl", "cli"]:
            continue
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        top = {id(n) for n in tree.body}
        import_time = {id(n) for block in tree.body for n in ast.walk(block)  # run when the module is imported
                       if isinstance(block, ast.Try) or (isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test))}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top | import_time:
                continue
            text = " ".join(lines[node.lineno - 1 : node.end_lineno])
            if "# lazy:" not in text:
                bad.append(f"{m}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(bad)


def test_every_package_has_a_layer():
    assert {_package(m) for m in _modules()} <= set(RANK)


def test_no_import_cycles():
    assert cycles(graph(_modules())) == []


def test_layers_only_point_down():
    assert layer_violations(graph(_modules())) == []


def test_no_private_names_across_modules():
    assert private_imports(_modules()) == []


def test_function_level_imports_say_why_they_are_lazy():
    assert unjustified_lazy_imports(_modules()) == []


def test_the_checks_catch_a_cycle_a_wrong_direction_and_a_private_name(tmp_path):
    g = {"audiossl.models.a": {"audiossl.eval.b"}, "audiossl.eval.b": {"audiossl.models.a"}}
    assert cycles(g) == [["audiossl.eval.b", "audiossl.models.a"]]
    assert layer_violations(g) == ["audiossl.models.a imports audiossl.eval.b (eval is not below models)"]
    assert layer_violations({"audiossl.eval.b": {"audiossl.extract.c"}})  # same layer: refused too
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from audiossl.models.hubert import _secret\n")
    assert private_imports({"audiossl.upstream.x": src}) == ["audiossl.upstream.x imports audiossl.models.hubert._secret"]
    src.write_text("import torch\nfrom audiossl.utils import fileio\n\n\ndef f():\n    import json\n"
                   "    from audiossl.models import hubert  # lazy: pulls transformers\n"
                   "    from audiossl.models.hubert import (\n        x,\n    )  # lazy: plug-in\n"
                   "    from . import y\n    from audiossl.data import manifest\n")
    assert [b.split(":", 1)[1] for b in unjustified_lazy_imports({"audiossl.upstream.x": src})] == [
        "11: from . import y", "12: from audiossl.data import manifest", "6: import json"]
    assert unjustified_lazy_imports({"audiossl.cli.x": src}) == []
