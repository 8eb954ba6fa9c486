"""The SAM template's own wiring, read from infra/aws/template.yaml, for the local AWS to deploy as
the template deploys it: EventBridge rules (their patterns, state, targets and input transformers),
the Image Builder notification queue, subscription and pipe, and the schedule inputs. Nothing here
restates a pattern or an input: each is the template's, with its intrinsic functions evaluated for
the given parameters (their defaults unless overridden) and the physical names of what the local
deploy made.
"""

from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parents[3] / "infra/aws/template.yaml"
NO_VALUE = object()


class Tag:
    """A short-form intrinsic function (`!Ref x`, `!Sub ...`), kept for evaluation."""

    def __init__(self, name: str, value):
        self.name, self.value = name, value


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tag(suffix, value)


_Loader.add_multi_constructor("!", _tag)


def load(path: Path = TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader with CFN tags)


class Stack:
    """The template with parameter values and physical names: `value(...)` evaluates a property."""

    def __init__(self, physical: dict, parameters: dict | None = None, region: str = "us-east-1",
                 account: str = "123456789012", name: str = "ami-rollout", template: dict | None = None):
        self.template = template or load()
        declared = self.template.get("Parameters", {})
        unknown = set(parameters or {}) - set(declared)
        if unknown:
            raise ValueError(f"the template has no parameters {sorted(unknown)}")
        self.parameters = {k: v.get("Default", "") for k, v in declared.items()}
        self.parameters.update(parameters or {})
        self.pseudo = {"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account,
                       "AWS::StackName": name, "AWS::NoValue": NO_VALUE}
        self.physical = physical  # "Logical" or "Logical.Attribute" -> what the local deploy made

    def resources(self, kind: str) -> dict:
        """The resources of a type whose condition holds, by logical id."""
        return {name: r for name, r in self.template["Resources"].items()
                if r["Type"] == kind and self.condition(r.get("Condition"))}

    def condition(self, name: str | None) -> bool:
        return name is None or bool(self.value(self.template["Conditions"][name]))

    def ref(self, name: str):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            kind = self.template["Parameters"][name]["Type"]
            if kind == "CommaDelimitedList" and isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return value
        if name in self.physical:
            return self.physical[name]
        raise KeyError(f"the local deploy made nothing for {name}")

    def value(self, node):
        """`node` with every intrinsic function evaluated (AWS::NoValue entries dropped)."""
        if isinstance(node, Tag):
            return self._intrinsic(node.name, node.value)
        if isinstance(node, dict):
            if len(node) == 1:
                (key, arg), = node.items()
                if key.startswith("Fn::") or key == "Ref" or key == "Condition":
                    return self._intrinsic(key.removeprefix("Fn::"), arg)
            out = {k: self.value(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not NO_VALUE}
        if isinstance(node, list):
            return [v for v in (self.value(v) for v in node) if v is not NO_VALUE]
        return node

    def _intrinsic(self, name: str, arg):
        if name == "Ref":
            return self.ref(arg)
        if name == "GetAtt":
            target = arg if isinstance(arg, str) else ".".join(arg)
            return self.ref(target)
        if name == "Sub":
            text, names = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self.value(v) for k, v in arg[1].items()})
            return self._substitute(text, names)
        if name == "Select":
            index, items = self.value(arg[0]), self.value(arg[1])
            return items[int(index)]
        if name == "Split":
            return str(self.value(arg[1])).split(self.value(arg[0]))
        if name == "Join":
            return self.value(arg[0]).join(str(v) for v in self.value(arg[1]))
        if name == "If":
            return self.value(arg[1] if self.condition(arg[0]) else arg[2])
        if name == "Not":
            return not self.value(arg[0])
        if name == "Equals":
            left, right = (self.value(a) for a in arg)
            return str(left) == str(right)
        if name == "Condition":
            return self.condition(arg)
        raise ValueError(f"intrinsic function {name} is not evaluated locally")

    def _substitute(self, text: str, names: dict) -> str:
        out, i = [], 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            end = text.index("}", start)
            key = text[start + 2:end]
            if key.startswith("!"):
                out.append("${" + key[1:] + "}")  # ${!Literal}
            else:
                out.append(str(names[key] if key in names else self.ref(key)))
            i = end + 1
        return "".join(out)
