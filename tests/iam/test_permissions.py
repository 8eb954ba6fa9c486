"""Every AWS operation a function's code can call is allowed by that function's role in the SAM
template, so a deploy never fails on AccessDenied.

The operations are derived from the code: each `clients.<service>.<operation>()` call (or
`<name>.<operation>()` on a client bound to a local name, as in `let ec2 = &clients.fleet.ec2;`) is
found in the function body that makes it (the libraries crates/core and crates/planner
included), and a function crate is charged with the calls of every library function it uses,
transitively; the methods of core's clients and storage types (`aws`, `store`, `stop`, `reach`)
and of the planner's types count when called by name as methods. The SDK client field names map to IAM
service prefixes (`sfn` is `states`). The state machine's role is checked against what the ASL's
Distributed Maps need (start, describe, stop and redrive their children; read the items, write
the results) and the functions its tasks call. Run with infra/check's venv
(cfn-lint decodes the template's short-form tags): make check.
"""

import fnmatch
import functools
import json
import re
import unittest
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra/aws/template.yaml"
CRATES = {
    "resolve-ami": "ResolveAmiRole",
    "update-template": "UpdateTemplateRole",
    "start-refresh": "StartRefreshRole",
    "check-ecs-health": "CheckEcsHealthRole",
    "rollback": "RollbackRole",
    "hold-targets": "HoldTargetsRole",
    "distribute-ami": "DistributeAmiRole",
}
# SDK client field (or local binding) name -> IAM service prefix.
IAM_PREFIX = {"ec2": "ec2", "autoscaling": "autoscaling", "ecs": "ecs", "cloudwatch": "cloudwatch", "ssm": "ssm",
              "dynamodb": "dynamodb", "sfn": "states", "s3": "s3", "sts": "sts", "kms": "kms", "lambda": "lambda",
              "organizations": "organizations", "imagebuilder": "imagebuilder", "sns": "sns"}
# Core modules whose types' methods make AWS calls: a `.method(` call of one of theirs counts.
METHOD_MODULES = ("aws", "store", "stop", "reach")
ASL = ROOT / "statemachine/rollout.asl.json"
WORKLOAD_TEMPLATE = ROOT / "infra/aws/workload-account-role.yaml"
# The services the functions that enter workload accounts call there (every fleet client acts
# wherever its target lives); the plans bucket, holds table, STS and Step Functions stay home.
FLEET_SERVICES = ("ec2", "autoscaling", "ecs", "cloudwatch", "ssm", "kms")
# Granted without a call of their own: Auto Scaling checks that whoever points a group at a launch
# template may launch from it and pass its instance profile's role; EC2 builds a root volume from
# an encrypted AMI with the caller's rights on its key (kms:ViaService).
IMPLIED = {"ec2:RunInstances", "iam:PassRole", "kms:Decrypt", "kms:GenerateDataKeyWithoutPlaintext",
           "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:CreateGrant"}
# Fleet-service calls made only with the home account's clients: the drift check's metrics, and
# the snapshots of an AMI the home account owns (preflight reads their keys there).
HOME_ONLY = {"cloudwatch:PutMetricData", "ec2:DescribeSnapshots"}
# What planning's code writes that the CLI never has it write: plan objects, the drift metrics.
HOME_ONLY_WRITES = {"s3:PutObject", "cloudwatch:PutMetricData"}
SERVICES = "|".join(IAM_PREFIX)
CALL = re.compile(rf"\.({SERVICES})\s*\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)")
# `let ec2 = &clients.fleet.ec2;`: calls on `ec2` are then EC2 calls (only such bindings, so an
# `ecs.is_some()` on some Option named `ecs` is not one).
BINDING = re.compile(rf"\blet\s+(?:mut\s+)?([a-z_][a-z0-9_]*)\s*(?::[^=;]*)?=\s*&?\s*[a-z_][a-z0-9_.]*\.({SERVICES})\s*;")
# `let kms = aws_sdk_kms::Client::new(...)`: calls on `kms` are then KMS calls.
BINDING_NEW = re.compile(rf"\blet\s+(?:mut\s+)?([a-z_][a-z0-9_]*)\s*=\s*aws_sdk_({SERVICES})::Client::new\b")
# `imagebuilder: &aws_sdk_imagebuilder::Client` as a function's parameter: calls on it likewise.
# `let kms = there.kms()?;`: a client made where the clients act; calls on `kms` likewise.
BINDING_METHOD = re.compile(rf"\blet\s+(?:mut\s+)?([a-z_][a-z0-9_]*)\s*=\s*[a-z_][a-z0-9_.]*\.({SERVICES})\(\)\??\s*;")
BINDING_PARAM = re.compile(rf"\b([a-z_][a-z0-9_]*)\s*:\s*&\s*aws_sdk_({SERVICES})::Client\b")
FN = re.compile(r"\bfn\s+([a-z_][a-z0-9_]*)")


def camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def functions_in(source: str) -> dict[str, str]:
    """Each `fn name` with its signature and body (brace-matched), outside `mod tests`."""
    source = source.split("#[cfg(test)]")[0]
    bodies = {}
    for match in FN.finditer(source):
        start = source.find("{", match.end())
        if start < 0 or ";" in source[match.end():start]:
            continue  # a declaration without a body
        depth, i = 0, start
        while i < len(source):
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            if depth == 0:
                break
            i += 1
        # The signature too: a client passed as a parameter binds its name there.
        bodies[match.group(1)] = bodies.get(match.group(1), "") + source[match.start():i + 1]
    return bodies


def calls_of(body: str) -> set[str]:
    found = CALL.findall(body)
    bindings = BINDING.findall(body) + BINDING_NEW.findall(body) + BINDING_METHOD.findall(body) \
        + BINDING_PARAM.findall(body)
    for name, svc in bindings:
        found += [(svc, op) for op in re.findall(rf"(?<![\w.:]){name}\s*\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)", body)]
    return {f"{IAM_PREFIX[svc]}:{camel(op)}" for svc, op in found
            if not op.startswith(("as_", "clone", "config"))}


# The libraries a function crate's calls may live in (crate name in code -> source folder): the
# adapters and the planner (resolve-ami is the planner's handler).
LIBRARIES = {"rollout_core": "crates/core/src", "rollout_planner": "crates/planner/src"}


@functools.cache
def library_functions() -> dict[tuple[str, str, str], str]:
    """(library, module, function) -> body, for every function of the libraries."""
    bodies = {}
    for library, folder in LIBRARIES.items():
        for path in sorted((ROOT / folder).glob("*.rs")):
            for name, body in functions_in(path.read_text()).items():
                bodies[(library, path.stem, name)] = body
    return bodies


def uses(text: str, home: str | None, library: str, module: str, name: str) -> bool:
    """Whether `text` (code of the library `home`, or of a function crate) calls the library's
    `module::name`: by its whole path; through the module imported (`use lib::module;`,
    `use lib::{module, ..}`, `crate::` inside the library); by name imported; or as a method of
    one of core's storage types."""
    prefix = rf"(?:{library}|crate)" if home == library else library
    if re.search(rf"\b{prefix}::{module}::{name}\s*\(", text):
        return True
    module_imported = re.search(rf"use\s+{prefix}::({module}\s*;|{module}::\{{\s*self\b|\{{[^}}]*\b{module}\b)", text)
    if module_imported and re.search(rf"(?<![\w:]){module}::{name}\s*\(", text):
        return True
    if library == "rollout_core" and module in METHOD_MODULES and re.search(rf"\.\s*{name}\s*\(", text):
        return True
    # A method of the planner's types, the module or a type of it imported (`selection.instances
    # .find(`, `reach.enter(`).
    if library == "rollout_planner" and re.search(rf"\.\s*{name}\s*\(", text) and (
            module_imported or re.search(rf"use\s+{prefix}::{module}::(\{{[^}}]*\b[A-Z]|[A-Z])", text)):
        return True
    imported = re.search(rf"use\s+{prefix}::{module}::(\{{[^}}]*\b{name}\b[^}}]*\}}|{name}\s*;)", text)
    if imported and re.search(rf"(?<![.:\w]){name}\s*\(", text):
        return True
    # An associated function of a type the module defines (`Reach::of(`), the type imported.
    return any(re.search(rf"use\s+{prefix}::{module}::(\{{[^}}]*\b{kind}\b|{kind}\s*;)", text)
               for kind in re.findall(rf"\b([A-Z]\w*)::{name}\s*\(", text))


def reexported(library: str, name: str) -> str | None:
    """The module a library's root re-exports `name` from (`pub use module::{name}`)."""
    root = (ROOT / LIBRARIES[library] / "lib.rs").read_text()
    for module, items in re.findall(r"pub\s+use\s+([a-z_]+)::(\{[^}]*\}|[A-Za-z_]+)\s*;", root):
        if re.search(rf"\b{name}\b", items):
            return module
    return None


@functools.cache
def operations(crate: str) -> frozenset[str]:
    src = ROOT / f"functions/{crate}/src"
    if not src.is_dir():
        raise AssertionError(f"functions/{crate}/src does not exist: no code to check {CRATES[crate]} against")
    # Every module of the crate but its tests (a module's own tests follow its `#[cfg(test)]`).
    own = "".join(path.read_text().split("#[cfg(test)]")[0]
                  for path in sorted(src.glob("*.rs")) if path.name != "tests.rs")
    return calls_reached(own)


def calls_reached(own: str) -> frozenset[str]:
    """The calls of `own` (a function crate's or the CLI's code) and of every library function it
    reaches, transitively."""
    functions = library_functions()
    found = calls_of(own)
    pending, seen = [(None, None, own)], set()
    while pending:
        home_library, home, text = pending.pop()
        for (library, module, name), body in functions.items():
            key = (library, module, name)
            if key in seen:
                continue
            bare = home_library == library and home == module \
                and re.search(rf"(?<![.:\w]){name}\s*\(", text)
            # A name the library's root re-exports, called by that name.
            rooted = reexported(library, name) == module and re.search(
                rf"(?:{library}::{name}\s*\(|use\s+{library}::\{{[^}}]*\b{name}\b)", text) \
                and re.search(rf"(?<![.\w]){name}\s*\(", text)
            if bare or rooted or uses(text, home_library, library, module, name):
                seen.add(key)
                found |= calls_of(body)
                source = (ROOT / LIBRARIES[library] / f"{module}.rs").read_text()
                pending.append((library, module, body + "\n" + "\n".join(
                    re.findall(r"^use [^;]*;", source, re.M))))
    return frozenset(found)


def _all_states(definition: dict) -> list[dict]:
    found = []
    for state in definition["States"].values():
        found.append(state)
        if "ItemProcessor" in state:
            found += _all_states(state["ItemProcessor"])
    return found


def allowed(role: dict, resources: dict | None = None) -> list[str]:
    """The actions `role` allows: its inline policies', and its managed policies' found in
    `resources` (by `Ref`)."""
    documents = [policy["PolicyDocument"] for policy in role["Properties"].get("Policies", [])]
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        documents.append(resources[arn["Ref"]]["Properties"]["PolicyDocument"])
    actions = []
    for document in documents:
        for statement in document["Statement"]:
            if statement["Effect"] == "Allow":
                action = statement["Action"]
                actions += action if isinstance(action, list) else [action]
    return actions


# Granted without a call of the function's own, and why: every other granted action must be one
# the function's code calls (a stale grant is a finding, as a missing one is).
GRANTED_FOR_AWS = {
    "ec2:RunInstances": "Auto Scaling checks that whoever points a group at a launch template may launch from it",
    "iam:PassRole": "...and pass its instance profile's role",
    "ec2:CreateTags": "tagging on create: what a launch template's TagSpecifications tag, CopyImageTags",
    "sts:TagSession": "AssumeRole with session tags is authorized as sts:TagSession too",
    "s3:ListBucket": "lets S3 answer NoSuchKey rather than AccessDenied for a missing object",
    "kms:Decrypt": "EC2 encrypts a copy's snapshots (and SNS the approvals topic) with the caller's key rights",
    "kms:GenerateDataKey*": "SNS encrypts what the function publishes to the encrypted approvals topic",
    "kms:GenerateDataKeyWithoutPlaintext": "EC2 encrypts a copy's snapshots on the caller's behalf",
    "kms:ReEncryptFrom": "EC2 re-encrypts a copy's snapshots under the region's key",
    "kms:ReEncryptTo": "EC2 re-encrypts a copy's snapshots under the region's key",
    "sqs:SendMessage": "Lambda writes a failed asynchronous event to the dead-letter queue with the function's role",
}


class PermissionCoverage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        template, matches = decode(str(TEMPLATE))
        assert not matches, matches
        cls.resources = template["Resources"]

    def test_every_operation_the_code_calls_is_allowed(self):
        for crate, role in CRATES.items():
            with self.subTest(function=crate):
                granted = allowed(self.resources[role], self.resources)
                called = operations(crate)
                self.assertTrue(called, f"no AWS calls found for {crate}: the scan is broken")
                missing = sorted(op for op in called if not any(fnmatch.fnmatchcase(op, g) for g in granted))
                self.assertEqual(missing, [], f"{crate} calls these without {role} allowing them")

    def test_every_granted_action_is_called_or_granted_for_aws(self):
        for crate, role in CRATES.items():
            with self.subTest(function=crate):
                called = operations(crate)
                stale = sorted(g for g in allowed(self.resources[role], self.resources)
                               if not g.startswith("logs:") and g not in called and g not in GRANTED_FOR_AWS)
                self.assertEqual(stale, [], f"{role} grants what {crate} never calls")

    def test_the_scan_finds_known_calls(self):
        # Guards the scanner itself: a call through a core helper and one in the crate.
        self.assertIn("ec2:DescribeImages", operations("resolve-ami"))
        self.assertIn("autoscaling:RollbackInstanceRefresh", operations("rollback"))
        self.assertIn("autoscaling:StartInstanceRefresh", operations("start-refresh"))
        self.assertIn("cloudwatch:DescribeAlarms", operations("check-ecs-health"))
        # Through the storage types' methods.
        self.assertIn("s3:PutObject", operations("resolve-ami"))
        self.assertIn("s3:GetObject", operations("hold-targets"))
        self.assertIn("dynamodb:GetItem", operations("start-refresh"))
        # Through a client made in place (`let x = aws_sdk_<service>::Client::new(..)`).
        self.assertIn("organizations:ListAccountsForParent", operations("resolve-ami"))
        self.assertIn("kms:CreateGrant", operations("distribute-ami"))
        # Through a client the clients make where they act (`let kms = there.kms()?;`).
        self.assertIn("kms:ListGrants", operations("resolve-ami"))
        # Through a client passed as a parameter.
        self.assertIn("imagebuilder:GetImage", operations("resolve-ami"))

    def test_the_scan_maps_client_names_to_iam_prefixes(self):
        body = """
            clients.dynamodb.put_item().table_name(t).send().await;
            clients
                .sfn
                .describe_execution()
                .execution_arn(a);
            let ec2 = &clients.fleet.ec2;
            ec2.enable_image_deregistration_protection().image_id(i);
            aws_sdk_ec2::Client::new(&conf);
            let kms = aws_sdk_kms::Client::new(&regional);
            kms.create_grant().key_id(k);
            let keys = there.kms()?;
            keys.list_grants().key_id(k);
            if ecs.is_some() { sfn.not_a_client(); }
        """
        self.assertEqual(calls_of(body), {"dynamodb:PutItem", "states:DescribeExecution",
                                          "ec2:EnableImageDeregistrationProtection", "kms:CreateGrant",
                                          "kms:ListGrants"})

    def test_the_state_machine_role_allows_what_its_distributed_maps_and_tasks_need(self):
        role = self.resources["StateMachineRole"]
        granted = allowed(role)
        statements = [st for policy in role["Properties"]["Policies"]
                      for st in policy["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]

        def resources_for(action):
            found = []
            for st in statements:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                if action in actions:
                    res = st["Resource"]
                    found += [json.dumps(r) for r in (res if isinstance(res, list) else [res])]
            return " ".join(found)

        definition = json.loads(ASL.read_text())
        maps = [s for s in definition["States"].values()
                if s.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"]
        self.assertEqual(len(maps), 2, "a wave's Map and the rollback's")
        needed = {"states:StartExecution", "states:DescribeExecution", "states:StopExecution",
                  "states:RedriveExecution"}
        for state in maps:
            if state["ItemReader"]["Resource"].endswith("s3:getObject"):
                needed.add("s3:GetObject")
            if state["ResultWriter"]["Resource"].endswith("s3:putObject"):
                needed.add("s3:PutObject")
        for action in sorted(needed):
            self.assertIn(action, granted, action)
        # Children of this state machine only, and the plans bucket only.
        self.assertIn("stateMachine:${AWS::StackName}", resources_for("states:StartExecution"))
        self.assertIn("execution:${AWS::StackName}/*", resources_for("states:StopExecution"))
        # Both forms the Developer Guide and nested Map Runs use.
        self.assertIn("execution:${AWS::StackName}:*", resources_for("states:DescribeExecution"))
        self.assertIn("stateMachine:${AWS::StackName}/*", resources_for("states:StartExecution"))
        self.assertIn("PlansBucket.Arn", resources_for("s3:GetObject"))
        self.assertIn("PlansBucket.Arn}/results/*", resources_for("s3:PutObject"))
        # A callback task (an approval gate) names its function in its parameters.
        tasks = {s["Parameters"]["FunctionName"] if s["Resource"].endswith(":lambda:invoke.waitForTaskToken")
                 else s["Resource"] for s in _all_states(definition) if s["Type"] == "Task"}
        invokable = resources_for("lambda:InvokeFunction")
        for task in tasks:
            resource = task.strip("${}").removesuffix("Arn")
            self.assertIn(resource, invokable, task)

    def test_functions_that_enter_workload_accounts_may_assume_the_workload_role_only(self):
        for crate, role in CRATES.items():
            if "sts:AssumeRole" not in operations(crate):
                self.assertNotIn("sts:AssumeRole", allowed(self.resources[role], self.resources), crate)
                continue
            with self.subTest(function=crate):
                statements = [st for policy in self.resources[role]["Properties"]["Policies"]
                              for st in policy["PolicyDocument"]["Statement"]]
                [assume] = [st for st in statements if "sts:AssumeRole" in st["Action"]]
                self.assertEqual(sorted(assume["Action"]), ["sts:AssumeRole", "sts:TagSession"])
                self.assertIn("role/${WorkloadRoleName}", json.dumps(assume["Resource"]))

    def test_the_workload_role_grants_exactly_what_the_functions_call_in_a_workload_account(self):
        template, matches = decode(str(WORKLOAD_TEMPLATE))
        assert not matches, matches
        role = template["Resources"]["WorkloadRole"]
        granted = set(allowed(role, template["Resources"]))
        # The functions that enter workload accounts (distribute-ami copies in the home account only).
        entering = [operations(crate) for crate in CRATES if "sts:AssumeRole" in operations(crate)]
        called = set().union(*entering)
        fleet_calls = {op for op in called if op.split(":")[0] in FLEET_SERVICES} - HOME_ONLY
        self.assertIn("autoscaling:StartInstanceRefresh", fleet_calls, "the scan is broken")
        missing = sorted(op for op in fleet_calls if not any(fnmatch.fnmatchcase(op, g) for g in granted))
        self.assertEqual(missing, [], "called in a workload account but not granted by the workload role")
        unused = sorted(g for g in granted - IMPLIED if not any(fnmatch.fnmatchcase(op, g) for op in fleet_calls))
        self.assertEqual(unused, [], "granted by the workload role but called by no function")
        # Trusted: the central account's function roles, with the ExternalId, allowed to tag the session.
        [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        self.assertEqual(sorted(trust["Action"]), ["sts:AssumeRole", "sts:TagSession"])
        self.assertIn("CentralAccountId", json.dumps(trust["Principal"]))
        self.assertIn("sts:ExternalId", trust["Condition"]["StringEquals"])
        self.assertIn("aws:PrincipalArn", trust["Condition"]["ArnLike"])

    def test_the_workload_role_trusts_the_function_roles_by_path_whatever_the_stack_names_length(self):
        # CloudFormation names a role `<stack>-<logical id>-<suffix>` cut to 64 characters, so a
        # long stack name loses its end: the trust names the roles' path, which is never cut.
        entering = [role for crate, role in CRATES.items() if "sts:AssumeRole" in operations(crate)]
        self.assertIn("ResolveAmiRole", entering)
        for role in entering:
            self.assertEqual(json.dumps(self.resources[role]["Properties"]["Path"]), json.dumps({"Fn::Sub": "/${AWS::StackName}/"}), role)
        template, matches = decode(str(WORKLOAD_TEMPLATE))
        assert not matches, matches
        [trust] = template["Resources"]["WorkloadRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        principal = json.dumps(trust["Condition"]["ArnLike"]["aws:PrincipalArn"])
        self.assertIn(":role/${CentralStackName}/*", principal)
        # The pre-path form, for one release (either stack may be updated first).
        self.assertIn(":role/${CentralStackName}-*", principal)
        # Fixed names fit IAM's 64 characters: each is a parameter held to IAM's pattern.
        for path, resources, parameters in ((TEMPLATE, self.resources, None), (WORKLOAD_TEMPLATE, template["Resources"], template["Parameters"])):
            named = [r["Properties"]["RoleName"] for r in resources.values()
                     if r["Type"] == "AWS::IAM::Role" and "RoleName" in r["Properties"]]
            for name in named:
                with self.subTest(template=path.name, name=name):
                    self.assertEqual(set(name), {"Ref"}, "a role name built from the stack name may pass 64 characters")
                    self.assertEqual(parameters[name["Ref"]]["AllowedPattern"], "[\\w+=,.@-]{1,64}")

    def test_the_operator_role_reads_what_the_cli_reads_there_and_changes_nothing(self):
        template, matches = decode(str(WORKLOAD_TEMPLATE))
        assert not matches, matches
        role = template["Resources"]["OperatorRole"]
        self.assertEqual(role["Condition"], "WithOperatorRole")
        self.assertNotIn("Policies", role["Properties"], "only the reads it shares with the functions")
        granted = set(allowed(role, template["Resources"]))
        writes = sorted(a for a in granted if not re.match(r"[a-z0-9]+:(Describe|List|Get)", a))
        self.assertEqual(writes, [], "the operator role only reads")
        # plan, drift and undo's check run resolve-ami's own code in workload accounts.
        reads = {op for op in operations("resolve-ami") if op.split(":")[0] in FLEET_SERVICES} - HOME_ONLY
        self.assertIn("autoscaling:DescribeAutoScalingGroups", reads, "the scan is broken")
        missing = sorted(op for op in reads if not any(fnmatch.fnmatchcase(op, g) for g in granted))
        self.assertEqual(missing, [], "read by the CLI in a workload account but not granted to operators")
        [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        self.assertEqual(trust["Action"], "sts:AssumeRole")
        self.assertIn("OperatorPrincipalArn", json.dumps(trust["Principal"]))

    def test_the_central_operator_role_runs_the_cli_and_changes_no_fleet(self):
        role = self.resources["OperatorRole"]
        self.assertEqual(role["Condition"], "WithOperatorRole")
        granted = set(allowed(role, self.resources))
        # The CLI's own calls (cli/src), and planning's reads (plan, drift, undo's check run
        # resolve-ami's planning code), in the home account.
        cli = calls_of("".join(p.read_text() for p in sorted((ROOT / "cli/src").glob("*.rs"))))
        self.assertIn("states:StartExecution", cli, "the scan is broken")
        reads = {op for op in operations("resolve-ami") if op.split(":")[0] in FLEET_SERVICES + ("imagebuilder",)}
        # Approving is ApproverPolicy's; GetCallerIdentity needs no permission.
        needed = (cli | reads) - HOME_ONLY_WRITES - {"states:SendTaskSuccess", "states:SendTaskFailure",
                                                     "sts:GetCallerIdentity"}
        missing = sorted(op for op in needed if not any(fnmatch.fnmatchcase(op, g) for g in granted))
        self.assertEqual(missing, [], "called by the CLI but not granted to operators")
        fleet_writes = sorted(a for a in granted if a.split(":")[0] in FLEET_SERVICES
                              and not re.match(r"[a-z0-9]+:(Describe|List|Get)", a))
        self.assertEqual(fleet_writes, [], "the operator role changes no fleet")
        self.assertNotIn("states:SendTaskSuccess", granted, "approving is ApproverPolicy's")

    def test_no_role_grants_everything(self):
        for role in (*CRATES.values(), "StateMachineRole", "EventsRole", "OperatorRole"):
            for action in allowed(self.resources[role], self.resources):
                self.assertNotIn(action, ("*", "ec2:*", "autoscaling:*", "ecs:*"), role)


if __name__ == "__main__":
    unittest.main()
