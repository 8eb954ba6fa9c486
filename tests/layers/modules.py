"""The module graph of every crate in the workspace, and the crate graph: no circle between the
modules of a crate, and no crate pointing at a function crate (only the handlers live under
`functions/`; the cross-function tests crate is the one exception, as it tests the handlers).

A module uses another when its code (outside `#[cfg(test)]`) names it by a path: `crate::x`,
`super::x`, `self::x` from a crate root, or a bare `x::` where `x` is a sibling module the file
declares. A name the crate root re-exports (`pub use x::Name`) counts as a use of `x`.

Why not cargo-modules: it builds rust-analyzer's crates (measured: longer than the whole
workspace's cold build on 2 cores) on every clean CI machine; this reads the same `use` paths in
a second. It also holds the planner to functions of at most 80 lines. Run by `make lint`;
`python3 tests/layers/modules.py --graph` prints the edges.
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH_HEAD = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)::\{([^;]*)\}\s*;", re.S)
PUB_USE = re.compile(r"\bpub\s+use\s+(?:self::|crate::)?([a-z_][a-z0-9_]*)::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_]*)\s*;", re.S)
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", re.M)
CFG_TEST_MOD = re.compile(r"#\[cfg\((?:test|any\(test[^\]]*)\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;")


def strip(source: str) -> str:
    """The code without comments, string literals, and `#[cfg(test)]` inline modules."""
    source = re.sub(r"//[^\n]*", "", source)
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    source = re.sub(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"', '""', source)
    marker = re.search(r"#\[cfg\(test\)\]\s*mod\s+[a-z_]+\s*\{", source)
    source = source[:marker.start()] if marker else source
    return flatten_inline(source)


def flatten_inline(source: str) -> str:
    """Inline `mod x { ... }` blocks read as part of their file's module: their `super::` is the
    file's `self::` (a file is the unit of this graph)."""
    out, i = [], 0
    for match in re.finditer(r"\bmod\s+[a-z_][a-z0-9_]*\s*\{", source):
        if match.start() < i:
            continue
        depth, j = 0, match.end() - 1
        while j < len(source):
            depth += {"{": 1, "}": -1}.get(source[j], 0)
            if depth == 0:
                break
            j += 1
        out.append(source[i:match.end()])
        out.append(source[match.end():j].replace("super::", "self::"))
        i = j
    out.append(source[i:])
    return "".join(out)


def modules(crate_root: Path) -> dict[str, Path]:
    """Module path (`a::b`, the root is ``) -> its file, following `mod x;` declarations and
    leaving out modules compiled only for tests."""
    found, pending = {}, [("", crate_root)]
    while pending:
        name, path = pending.pop()
        found[name] = path
        text = path.read_text()
        test_only = set(CFG_TEST_MOD.findall(text))
        folder = path.parent if path.name in ("lib.rs", "main.rs", "mod.rs") else path.parent / path.stem
        for child in MOD_DECL.findall(strip(text)):
            if child in test_only:
                continue
            for candidate in (folder / f"{child}.rs", folder / child / "mod.rs"):
                if candidate.exists():
                    pending.append((f"{name}::{child}" if name else child, candidate))
    return found


def resolve(current: str, head: str, rest: list[str], known: set[str]) -> str | None:
    """The longest known module a path names, from `current`."""
    base = [] if head == "crate" else current.split("::") if current else []
    if head == "super":
        base = base[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    parts, best = base[:], "::".join(base)
    for part in rest:
        parts.append(part)
        candidate = "::".join(parts)
        if candidate in known:
            best = candidate
        else:
            break
    return best


def group_heads(body: str) -> list[list[str]]:
    """The first segments of each path in a `use x::{a::b, c, d::{e}}` group."""
    heads, depth, item = [], 0, ""
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            item = item.strip()
            if item:
                heads.append([p for p in re.split(r"::", item.split("{")[0]) if p.strip()][:4])
            item = ""
        else:
            item += ch
    return [[p.strip() for p in h] for h in heads]


def edges(crate_root: Path) -> dict[str, set[str]]:
    mods = modules(crate_root)
    known = set(mods)
    # Names the root re-exports, to the module that defines them.
    reexports, external = {}, set()
    for module, items in PUB_USE.findall(strip(mods[""].read_text())):
        names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", items)
        if module in known:
            reexports.update((name, module) for name in names)
        else:  # another crate's items: a path through them stays out of this crate's graph
            external.update(names)
    graph = {name: set() for name in mods}
    for name, path in mods.items():
        code = strip(path.read_text())
        targets = []
        for head, body in USE_GROUP.findall(code):
            for rest in group_heads(body):
                targets.append((head, rest))
        for match in PATH_HEAD.finditer(code):
            if match.group(2) == "::{":
                continue
            targets.append((match.group(1), match.group(2).split("::")[1:]))
        # A bare `child::` path from a file that declares `mod child;`.
        for child in MOD_DECL.findall(code):
            full = f"{name}::{child}" if name else child
            if full in known and re.search(rf"(?<![\w:]){child}::", code):
                graph[name].add(full)
        for head, rest in targets:
            if head == "self" and name:
                rest = name.split("::") + rest
                head = "crate"
            target = resolve(name, head, rest, known)
            if target == "" and rest and rest[0] in reexports:
                target = reexports[rest[0]]
            elif target == "" and rest and rest[0] in external:
                continue
            if target is not None and target != name and not name.startswith(target + "::" if target else "\0"):
                graph[name].add(target)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle in the graph, if there is one (a depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def crates() -> dict[str, Path]:
    """Each workspace member's directory by package name."""
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    found = {}
    for pattern in members:
        for folder in sorted(ROOT.glob(pattern)):
            manifest = folder / "Cargo.toml"
            if manifest.exists():
                found[tomllib.loads(manifest.read_text())["package"]["name"]] = folder
    return found


def roots(folder: Path) -> list[Path]:
    """The crate roots in a package: its library and its binaries."""
    manifest = tomllib.loads((folder / "Cargo.toml").read_text())
    found = []
    lib = folder / manifest.get("lib", {}).get("path", "src/lib.rs")
    if lib.exists():
        found.append(lib)
    for binary in manifest.get("bin", []):
        path = folder / binary.get("path", f"src/bin/{binary['name']}.rs")
        if path.exists() and path not in found:
            found.append(path)
    main = folder / "src/main.rs"
    if main.exists() and main not in found:
        found.append(main)
    return found


# The planner reads as steps: no function longer than this (issue 33).
LONGEST_FUNCTION = {"rollout-planner": 80}
FN = re.compile(r"^[ \t]*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?fn\s+([a-z_][a-z0-9_]*)", re.M)


def long_functions(folder: Path, limit: int) -> list[str]:
    """Functions (outside tests) longer than `limit` lines, from `fn` to the closing brace."""
    found = []
    for path in sorted((folder / "src").rglob("*.rs")):
        if path.name == "tests.rs":
            continue
        text = path.read_text()
        marker = re.search(r"#\[cfg\(test\)\]\s*mod\s+[a-z_]+\s*\{", text)
        text = text[:marker.start()] if marker else text
        for match in FN.finditer(text):
            start = text.find("{", match.end())
            if start < 0 or ";" in text[match.end():start]:
                continue
            depth, i = 0, start
            while i < len(text):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                if depth == 0:
                    break
                i += 1
            lines = text.count("\n", match.start(), i) + 1
            if lines > limit:
                line = text.count("\n", 0, match.start()) + 1
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                found.append(f"{shown}:{line}: fn {match.group(1)} is {lines} lines, "
                             f"more than {limit}")
    return found


def problems(show_graph: bool = False) -> list[str]:
    found = []
    packages = crates()
    handlers = {name for name, folder in packages.items() if folder.parent.name == "functions"}
    for name, folder in packages.items():
        manifest = tomllib.loads((folder / "Cargo.toml").read_text())
        deps = set(manifest.get("dependencies", {})) | set(manifest.get("build-dependencies", {}))
        if name != "ami-rollout-tests":
            deps |= set(manifest.get("dev-dependencies", {}))
            for dep in sorted(deps & handlers):
                found.append(f"{name} depends on {dep}, a function crate (functions/ holds only handlers)")
        if name in LONGEST_FUNCTION:
            found += long_functions(folder, LONGEST_FUNCTION[name])
        for root in roots(folder):
            graph = edges(root)
            if show_graph:
                for module in sorted(graph):
                    for target in sorted(graph[module]):
                        print(f"{name} {root.relative_to(folder)}: {module or '(root)'} -> {target or '(root)'}")
            circle = cycle(graph)
            if circle:
                found.append(f"{name} ({root.relative_to(ROOT)}): modules in a circle: "
                             + " -> ".join(m or "(root)" for m in circle))
    return found


if __name__ == "__main__":
    found = problems("--graph" in sys.argv)
    for problem in found:
        print(problem, file=sys.stderr)
    sys.exit(1 if found else 0)
