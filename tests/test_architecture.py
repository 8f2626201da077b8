"""The shape of the package: no import cycles, the core never imports the evaluation tools, and
the package's face (``iqrah.Engine``) judges offline and live with the same judge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (imports for annotations only, which
    never run and so never make a cycle)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at any depth of its code, lazy imports included;
    imports for type annotations only are left out)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    target = f"{module}.{alias.name}"
                    deps.add(target if target in mods else module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_import_cycles_between_modules_or_packages():
    graph = import_graph()
    assert cycles(graph) == []
    packages = {}
    for module, deps in graph.items():
        for dep in deps:
            if _package(dep) != _package(module) and _package(module) != "iqrah":
                packages.setdefault(_package(module), set()).add(_package(dep))
    assert cycles(packages) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_the_evaluation_tools():
    """Evaluation reads the engine; the engine (everything but the CLI) never reads evaluation."""
    core = {m: d for m, d in import_graph().items()
            if not m.startswith(("iqrah.evaluate", "iqrah.cli"))}
    assert {m: sorted(d) for m, d in core.items() if any(x.startswith("iqrah.evaluate") for x in d)} == {}


@pytest.fixture(scope="module")
def engine():
    from iqrah.acoustic.onnx_model import bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    import iqrah

    return iqrah.Engine(threads=1)


def test_engine_judges_offline_and_live_with_the_same_report(engine, recitations):
    import numpy as np

    import iqrah

    path = recitations / "dev" / "offline-tarteel-test-corpus-112001.opus"
    report = engine.analyze(path, "112:1")
    assert isinstance(report, iqrah.Report)
    assert [w.verdict for w in report.words][:3] == ["correct"] * 3 and report.scores.content == 100
    audio = iqrah.decode_audio(path)
    stream = engine.stream("112:1")
    events = []
    for i in range(0, audio.size, 1600):
        events += stream.feed(audio[i:i + 1600])
    events += stream.flush() + stream.finish()
    assert {e.data["index"] for e in events if e.type == "word"} == {0, 1, 2, 3}
    final = events[-1]
    assert final.type == "final"
    assert final.data == report.model_dump(mode="json") | {"timings_ms": final.data["timings_ms"]}
    assert np.isclose(final.data["duration_s"], audio.size / 16000, atol=1e-3)


def test_engine_settings_and_bad_input_errors(engine):
    import iqrah

    ref = iqrah.build_reference("1:2", iqrah.RecitationSettings.from_madd(madd_aared=6))
    assert ref.words
    with pytest.raises(ValueError, match="invalid recitation settings: madd_aared_len"):
        iqrah.RecitationSettings.from_madd(madd_aared=5)
    with pytest.raises(iqrah.UnknownAyahError):
        engine.analyze(b"RIFF", "115:1")
    with pytest.raises(iqrah.AudioError):
        engine.analyze(b"not audio at all", "1:1")
    with pytest.raises(AttributeError):
        iqrah.NotAThing  # noqa: B018
