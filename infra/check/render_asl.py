"""Writes each statemachine/*.asl.json with its DefinitionSubstitutions filled in (example ARNs,
as SAM fills real ones) to infra/check/.rendered/, so the ASL linters see a deployable definition:
both reject the `${...}` placeholders as Resource URIs."""

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
        print(OUT / path.name)


if __name__ == "__main__":
    main()
