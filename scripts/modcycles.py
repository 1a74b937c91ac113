#!/usr/bin/env python3
"""Finds import cycles between the modules of each crate of the workspace.

A module is a source file (`a.rs`, `a/mod.rs`, `a/b.rs`); an inline
`#[cfg(test)] mod tests { … }` belongs to no graph (tests only look down).
An edge A -> B means code in A names an item that B defines: through `use`
(re-exports followed to where the item is defined) or a path in the code
(`crate::b::f`, `super::X`, `child::g`). Declaring a child (`mod b;`) is not
an edge, using it is. The check fails when any two modules reach each other.

    scripts/modcycles.py [CRATE_DIR ...]     # default: every crate with src/
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ITEM_RE = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+|const\s+|unsafe\s+|extern\s+\"C\"\s+)*"
    r"(?:fn|struct|enum|trait|type|const|static|mod|union|macro_rules!)\s+(" + IDENT + ")",
    re.M,
)
MOD_DECL_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", re.M)


def strip_comments_and_strings(text):
    """Blanks out comments, strings and char literals, keeping line breaks."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i)):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == "'":
            m = re.match(r"'(?:\\.[^']*|[^'\\])'", text[i:i + 12])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def cut_inline_tests(text):
    """Removes `#[cfg(test)]` inline modules (their braces matched)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{", text)
        if not m:
            return text
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        text = text[: m.start()] + "\n" * text.count("\n", m.start(), j) + text[j:]


def split_use_tree(tree):
    """`a::{b, c::{d, e as f}}` -> [['a','b'], ['a','c','d'], ['a','c','e']]."""
    tree = re.sub(r"\s+as\s+" + IDENT, "", tree)
    tree = re.sub(r"\s+", "", tree)
    results = []

    def walk(prefix, s):
        depth, parts, cur = 0, [], ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        for part in parts:
            brace = part.find("{")
            if brace >= 0:
                head = [p for p in part[:brace].split("::") if p]
                walk(prefix + head, part[brace + 1 : part.rfind("}")])
            else:
                segs = [p for p in part.split("::") if p]
                results.append(prefix + segs)

    walk([], tree)
    return results


class Crate:
    def __init__(self, root):
        self.root = root
        src = os.path.join(root, "src")
        self.modules = {}  # path tuple -> dict
        entry = None
        for name in ("lib.rs", "main.rs"):
            if os.path.exists(os.path.join(src, name)):
                entry = os.path.join(src, name)
                break
        if entry is None:
            raise SystemExit(f"{root}: no src/lib.rs or src/main.rs")
        self.load((), entry, src)

    def load(self, path, file, dir_of_children):
        raw = open(file, encoding="utf-8").read()
        text = cut_inline_tests(strip_comments_and_strings(raw))
        # `#[cfg(test)] mod x;` is test code: outside the layers, left out.
        text = re.sub(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*;", "", text)
        children = MOD_DECL_RE.findall(text)
        self.modules[path] = {"file": file, "text": text, "children": set(children)}
        for child in children:
            for candidate, grand in (
                (os.path.join(dir_of_children, child + ".rs"), os.path.join(dir_of_children, child)),
                (os.path.join(dir_of_children, child, "mod.rs"), os.path.join(dir_of_children, child)),
            ):
                if os.path.exists(candidate):
                    self.load(path + (child,), candidate, grand)
                    break

    def defined(self, path):
        m = self.modules[path]
        return set(ITEM_RE.findall(m["text"])) | m["children"]

    def reexports(self, path):
        """name -> full path segments of `pub use` items of a module."""
        out = {}
        text = self.modules[path]["text"]
        for m in re.finditer(r"pub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
            for segs in split_use_tree(m.group(1)):
                if segs and segs[-1] not in ("*", "self"):
                    out[segs[-1]] = segs
        return out

    def absolute(self, current, segs):
        """Turns a path as written in `current` into crate-absolute segments,
        or None when it leaves the crate."""
        if not segs:
            return None
        head = segs[0]
        if head == "crate":
            return list(segs[1:])
        if head == "self":
            return list(current) + list(segs[1:])
        if head == "super":
            base = list(current)
            rest = list(segs)
            while rest and rest[0] == "super":
                if not base:
                    return None
                base.pop()
                rest.pop(0)
            return base + rest
        if head in self.modules[current]["children"]:
            return list(current) + list(segs)
        return None

    def resolve(self, absolute, seen=None):
        """The module that defines the item at `absolute` (crate-relative)."""
        seen = seen or set()
        key = tuple(absolute)
        if key in seen:
            return None
        seen.add(key)
        module, i = (), 0
        while i < len(absolute) and module + (absolute[i],) in self.modules:
            module = module + (absolute[i],)
            i += 1
        if i == len(absolute):
            return module
        name = absolute[i]
        if name in self.defined(module) or name == "*":
            return module
        target = self.reexports(module).get(name)
        if target is not None:
            again = self.absolute(module, target)
            if again is None:
                return None  # an external crate's item
            return self.resolve(again + absolute[i + 1 :], seen)
        return module

    def edges(self):
        graph = defaultdict(set)
        for path, m in self.modules.items():
            text = m["text"]
            paths = []
            for u in re.finditer(r"\buse\s+([^;]+);", text):
                paths.extend(split_use_tree(u.group(1)))
            heads = "|".join(["crate", "super", "self"] + sorted(m["children"]))
            for p in re.finditer(r"(?<![A-Za-z0-9_:])((?:" + heads + r")(?:::" + IDENT + r")+)", text):
                paths.append(p.group(1).split("::"))
            for segs in paths:
                absolute = self.absolute(path, segs)
                if absolute is None:
                    continue
                target = self.resolve(absolute)
                if target is None or target == path:
                    continue
                # Naming a module on the way to a child's item is not a use
                # of the module itself.
                graph[path].add(target)
        return graph


def cycles(graph):
    """Strongly connected components with more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            connect(v)
    return out


def name(path):
    return "::".join(path) or "crate"


def main():
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    crates = sys.argv[1:] or sorted(
        os.path.join(top, d)
        for d in os.listdir(top)
        if os.path.isdir(os.path.join(top, d, "src")) and os.path.exists(os.path.join(top, d, "Cargo.toml"))
    )
    failed = False
    for root in crates:
        crate = Crate(root)
        graph = crate.edges()
        label = os.path.relpath(root, top)
        # Between files, and between the crate's top-level modules (a child
        # of `a` using `b` is `a` using `b`).
        top_level = defaultdict(set)
        for a, targets in graph.items():
            for b in targets:
                if a and b and a[0] != b[0]:
                    top_level[a[:1]].add(b[:1])
        found = [(c, graph) for c in cycles(graph)] + [(c, top_level) for c in cycles(top_level)]
        if not found:
            print(f"{label}: {len(crate.modules)} modules, no import cycle")
            continue
        failed = True
        for component, edges in found:
            members = set(component)
            print(f"{label}: import cycle among {', '.join(sorted(name(c) for c in component))}")
            for a in sorted(component):
                for b in sorted(edges[a] & members):
                    print(f"    {name(a)} -> {name(b)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
