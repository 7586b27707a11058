"""Import layering: no import cycle anywhere in gfpgan (module- or function-level), the weights
stack points one way, every module imports alone in a fresh interpreter, and the trainer asks
its model nothing through ``hasattr``/``getattr``."""

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
# the weights stack, bottom first: each may import only the ones before it
WEIGHT_LAYERS = ["gfpgan.checkpoint", "gfpgan.legacy", "gfpgan.model_cards", "gfpgan.networks"]
# The inference layers, bottom first: a module of one may import the layers before it (and the
# shared settings and timing), never one after it; video and faces are independent of each other.
INFERENCE_LAYERS = ["gfpgan.inference.video", "gfpgan.inference.job", "gfpgan.inference.faces",
                    "gfpgan.inference.tracks"]
INDEPENDENT = [("gfpgan.inference.video", "gfpgan.inference.faces"),
               ("gfpgan.inference.faces", "gfpgan.inference.job")]


def _modules() -> Dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "gfpgan").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known) -> List[str]:
    """Every gfpgan module ``name`` imports, at any depth (functions included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
            found += [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return sorted({m for m in found if m in known and m != name})


def _graph() -> Dict[str, List[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def _cycles(graph: Dict[str, List[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_hidden_cycle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": [], "c": ["a", "b"]}) == []


def test_no_import_cycle_even_through_function_level_imports():
    graph = _graph()
    assert len(graph) > 80 and "gfpgan.checkpoint" in graph["gfpgan.legacy"]  # the parse sees imports
    assert _cycles(graph) == []


def test_weights_stack_points_one_way():
    graph = _graph()
    for i, name in enumerate(WEIGHT_LAYERS):
        above = set(WEIGHT_LAYERS[i + 1:])
        assert not above & set(graph[name]), f"{name} imports a layer above it: {above & set(graph[name])}"
    assert "gfpgan.networks" in graph["gfpgan.inference.faces.model"]  # inference builds through the top


def _layer(module: str, layers: List[str]) -> int:
    return next((i for i, p in enumerate(layers) if module == p or module.startswith(p + ".")), -1)


def test_inference_layers_point_one_way():
    graph = _graph()
    assert graph["gfpgan.inference.tracks.video_restorer"]  # the parse sees this layer's imports
    for name, deps in graph.items():
        here = _layer(name, INFERENCE_LAYERS)
        if here < 0:
            continue
        for dep in deps:
            there = _layer(dep, INFERENCE_LAYERS)
            assert there <= here, f"{name} (layer {INFERENCE_LAYERS[here]}) imports {dep} above it"
            for a, b in INDEPENDENT:
                assert not (name.startswith(a + ".") and dep.startswith(b + ".")), f"{name} imports {dep}"
    # the reference's API sits on top: only entry points, tools and the reference's own module
    # paths (facades) import it
    facades = {"gfpgan", "gfpgan.utils"}
    top = ("gfpgan.compat", "gfpgan.tools.", "gfpgan.infer_image", "gfpgan.infer_video")
    for name, deps in graph.items():
        if name.startswith(top) or name in facades or name == "gfpgan.archs" or name.endswith("_arch"):
            continue
        assert not [d for d in deps if d.startswith("gfpgan.compat") or d in facades], name


def test_the_layer_check_can_fail():
    assert _layer("gfpgan.inference.faces.paste", INFERENCE_LAYERS) == 2
    assert _layer("gfpgan.inference.settings", INFERENCE_LAYERS) == -1


def _duck_typing(source: str) -> List[str]:
    """``hasattr``/``getattr`` calls whose object is a model or an optimizer."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr", "getattr"):
            subject = ast.unparse(node.args[0])
            if "model" in subject or "optim" in subject:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_engine_does_not_duck_type_the_model_or_its_optimizers():
    assert _duck_typing("if hasattr(model, 'last_visuals'):\n    getattr(self.optimizers, 'x')\n") == [
        "1: hasattr(model, 'last_visuals')", "2: getattr(self.optimizers, 'x')"]
    for path in sorted((ROOT / "gfpgan" / "engine").glob("*.py")):
        assert _duck_typing(path.read_text(encoding="utf-8")) == [], path.name


# Imports each module in a child forked from a parent that holds only third-party packages, so
# each child is a fresh interpreter as far as gfpgan goes (and cheap: torch is loaded once).
_FRESH = r"""
import importlib, os, sys, traceback
import numpy, torch, yaml  # noqa: F401  (third-party, shared by every child)
failed = []
for name in sys.argv[1:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            code = 1 if (exc.name or "").split(".")[0] == "gfpgan" else 0  # optional dependency
            os.write(w, traceback.format_exc().encode() if code else b"")
        except BaseException:
            code = 1
            os.write(w, traceback.format_exc().encode())
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        message = f.read()
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
        failed.append(name + ": " + message.strip().splitlines()[-1] if message else name)
print("\n".join(failed))
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = sorted(_modules())
    proc = subprocess.run([sys.executable, "-c", _FRESH, *names], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", f"modules that fail to import alone:\n{proc.stdout}"
