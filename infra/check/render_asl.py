"""Writes each statemachine/*.asl.json with its DefinitionSubstitutions filled in (example ARNs,
as SAM fills real ones) to infra/check/.rendered/, so the ASL linters see a deployable definition:
both reject the `${...}` placeholders as Resource URIs.

statelint 3.1.0 (the newest on PyPI) predates two Distributed Map fields AWS documents: the Map's
`Label` and `ItemReader.ReaderConfig.InputType`. It gets its own copy in .rendered/statelint/
without them, so it still checks everything else; asl-validator checks the whole definition."""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / ".rendered"


def function_arn(match: re.Match) -> str:
    name = re.sub(r"(?<!^)(?=[A-Z])", "-", match.group(1)).lower()
    return f"arn:aws:lambda:us-east-1:123456789012:function:ami-rollout-{name}"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for path in sorted((ROOT / "statemachine").glob("*.asl.json")):
        text = re.sub(r"\$\{(\w+)FunctionArn\}", function_arn, path.read_text())
        if "${" in text:
            sys.exit(f"{path}: a substitution this script does not know: {text[text.index('${'):][:60]}")
        (OUT / path.name).write_text(text)
        (OUT / "statelint").mkdir(exist_ok=True)
        (OUT / "statelint" / path.name).write_text(json.dumps(without_newer_fields(json.loads(text)), indent=2))
        print(OUT / path.name)


def without_newer_fields(definition: dict) -> dict:
    """The definition without the Distributed Map fields statelint 3.1.0 does not know."""
    for state in definition["States"].values():
        if "ItemProcessor" in state:
            state.pop("Label", None)
            (state.get("ItemReader", {}).get("ReaderConfig") or {}).pop("InputType", None)
            without_newer_fields(state["ItemProcessor"])
    return definition


if __name__ == "__main__":
    main()
