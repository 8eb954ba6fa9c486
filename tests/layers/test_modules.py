"""The layer check finds what it is for: a circle between modules, a crate pointing at a
function crate, a planner function too long; and it reads the paths Rust code names modules by."""

import tempfile
import unittest
from pathlib import Path

import modules


def crate(files: dict[str, str]) -> Path:
    root = Path(tempfile.mkdtemp())
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "src/lib.rs"


class ModuleGraph(unittest.TestCase):
    def test_a_circle_through_use_paths_is_found(self):
        lib = crate({
            "src/lib.rs": "pub mod a;\npub mod b;\n",
            "src/a.rs": "use crate::b::Thing;\npub struct Other;\n",
            "src/b.rs": "use crate::{a::Other};\npub struct Thing;\n",
        })
        self.assertEqual(modules.cycle(modules.edges(lib)), ["a", "b", "a"])

    def test_a_tree_has_no_circle_and_its_edges_are_read(self):
        lib = crate({
            "src/lib.rs": "pub mod a;\npub mod b;\npub use a::Other;\n",
            "src/a.rs": "pub struct Other;\n#[cfg(test)]\nmod tests {\n    use crate::b::Thing;\n}\n",
            "src/b.rs": "use super::a;\n// crate::a::nothing in a comment\nfn f() { let _ = crate::Other; a::g(); }\n",
        })
        graph = modules.edges(lib)
        self.assertIsNone(modules.cycle(graph))
        self.assertEqual(graph, {"": {"a"}, "a": set(), "b": {"a"}})

    def test_a_name_the_root_defines_makes_the_root_a_target(self):
        lib = crate({
            "src/lib.rs": "pub mod a;\npub fn helper() {}\nfn f() { a::g(); }\n",
            "src/a.rs": "pub fn g() { crate::helper(); }\n",
        })
        self.assertEqual(modules.cycle(modules.edges(lib)), ["", "a", ""])

    def test_a_function_over_the_limit_is_named(self):
        body = "\n".join("    let _ = 1;" for _ in range(9))
        lib = crate({"src/lib.rs": f"pub fn short() {{\n}}\n\nasync fn long() {{\n{body}\n}}\n"})
        found = modules.long_functions(lib.parent.parent, 10)
        self.assertEqual(len(found), 1)
        self.assertIn("fn long is 11 lines", found[0])

    def test_the_workspace_as_it_is_passes(self):
        self.assertEqual(modules.problems(), [])


if __name__ == "__main__":
    unittest.main()
