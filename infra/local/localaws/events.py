"""Events the fleet services send to EventBridge, as AWS sends them, delivered to the local bus.

AWS: every successful PutParameter or DeleteParameter emits a "Parameter Store Change" event
(source aws.ssm, detail operation / name / type) to the default bus of the account and region, and,
where a trail records management events, the "AWS API Call via CloudTrail" event of the call
(detail eventSource ssm.amazonaws.com, eventName PutParameter, requestParameters with the value
hidden, responseElements version / tier). Both arrive asynchronously, a moment after the call
answers. moto emits neither. Here both are sent, from a thread, to the local bus (ministack's
EventBridge: `POST /_localaws/events`, which publishes them as the service would: an `aws.*`
source no caller may use). The rules that match them are the SAM template's own (rules.py); the
template's CloudTrail rule is disabled unless its deployment enables it, as a trail would be
needed on AWS.

Writes under /aws are refused by moto as by AWS (AccessDeniedException). AWS's own public
parameters change without any event; `publish_public_parameter` is how the local AWS plays AWS
publishing one (control endpoint POST /_localaws/public-parameter).
"""

import datetime
import json
import os
import queue
import threading
import urllib.request
import uuid

from moto.core.utils import utcnow
from moto.ssm.models import Parameter, SimpleSystemManagerBackend

from . import clock

_outbox: queue.Queue = queue.Queue()
_sender: threading.Thread | None = None
# The owner of AWS's public ECS-optimized AMIs.
AMAZON = "591542846629"


def bus_url() -> str | None:
    """Where the local bus takes service events (set by the launcher; unset: no bus, no events)."""
    base = os.environ.get("LOCALAWS_EVENTS")
    return f"{base}/_localaws/events" if base else None


def _send_forever() -> None:
    while True:
        entries = _outbox.get()
        url = bus_url()
        try:
            if url:
                request = urllib.request.Request(url, data=json.dumps({"Entries": entries}).encode(),
                                                 headers={"Content-Type": "application/json"}, method="POST")
                urllib.request.urlopen(request, timeout=10).read()
        except OSError:
            pass  # best effort, as on AWS: a lost event starts nothing
        finally:
            _outbox.task_done()


def flush() -> None:
    """Waits until every event emitted so far reached the bus (tests: before rules change)."""
    _outbox.join()


def emit(entries: list[dict]) -> None:
    """Queues PutEvents entries (Source, DetailType, Detail as a dict, Resources, Account,
    Region) for the local bus."""
    global _sender
    if _sender is None:
        _sender = threading.Thread(target=_send_forever, daemon=True, name="service-events")
        _sender.start()
    _outbox.put([{**e, "Detail": json.dumps(e["Detail"])} for e in entries])


def _now() -> str:
    return clock.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def parameter_events(backend, name: str, operation: str, parameter=None, overwrite=None) -> list[dict]:
    """The events AWS sends for one successful parameter write or delete."""
    account, region = backend.account_id, backend.region_name
    arn = f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"
    detail = {"operation": operation, "name": name,
              "type": getattr(parameter, "parameter_type", None) or "String",
              "description": getattr(parameter, "description", None) or ""}
    if getattr(parameter, "data_type", None) == "aws:ec2:image":
        detail["dataType"] = "aws:ec2:image"
    events = [{"Source": "aws.ssm", "DetailType": "Parameter Store Change", "Detail": detail,
               "Resources": [arn], "Account": account, "Region": region}]
    if operation == "Delete":
        call, request, response = "DeleteParameter", {"name": name}, None
    else:
        call = "PutParameter"
        request = {"name": name, "value": "HIDDEN_DUE_TO_SECURITY_REASONS", "type": detail["type"]}
        if overwrite is not None:
            request["overwrite"] = bool(overwrite)
        response = {"version": parameter.version, "tier": parameter.tier or "Standard"}
    events.append({"Source": "aws.ssm", "DetailType": "AWS API Call via CloudTrail", "Resources": [],
                   "Account": account, "Region": region, "Detail": {
                       "eventVersion": "1.11", "eventTime": _now(), "eventSource": "ssm.amazonaws.com",
                       "eventName": call, "awsRegion": region, "sourceIPAddress": "127.0.0.1",
                       "userAgent": "localaws", "requestParameters": request,
                       "responseElements": response, "requestID": str(uuid.uuid4()),
                       "eventID": str(uuid.uuid4()), "readOnly": False, "eventType": "AwsApiCall",
                       "managementEvent": True, "recipientAccountId": account,
                       "eventCategory": "Management"}})
    return events


_original_put = SimpleSystemManagerBackend.put_parameter
_original_delete = SimpleSystemManagerBackend.delete_parameter


def _put_parameter(self, name, description, value, parameter_type, allowed_pattern, keyid,
                   overwrite, tags, data_type, tier, policies):
    existed = bool(self._parameters.get(name))
    parameter = _original_put(self, name, description, value, parameter_type, allowed_pattern, keyid,
                              overwrite, tags, data_type, tier, policies)
    emit(parameter_events(self, name, "Update" if existed else "Create", parameter, overwrite))
    return parameter


def _delete_parameter(self, name):
    result = _original_delete(self, name)
    emit(parameter_events(self, name, "Delete"))
    return result


def publish_public_parameter(account: str, region: str, name: str, image_name: str,
                             created: str) -> dict:
    """AWS publishing a new AMI behind one of its public parameters: an AMI owned by Amazon with
    the given creation date, visible to every account (moto's EC2 of `account`, where the fleet
    launches it), and the parameter pointing at it. No event, as on AWS."""
    from . import images

    when = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    image_id = images.made_like_public(account, region, image_name, "Amazon Linux AMI 2023 x86_64 ECS HVM EBS",
                                       owner_id=AMAZON, owner_alias="amazon", public=True, creation_date=when).id
    ssm = ssm_backend(account, region)
    versions = ssm._parameters[name]
    versions.append(Parameter(account_id=account, name=name, value=image_id, parameter_type="String",
                              description=None, allowed_pattern=None, keyid=None,
                              last_modified_date=utcnow(),
                              version=(versions[-1].version + 1) if versions else 1, data_type="aws:ec2:image"))
    return {"name": name, "imageId": image_id, "version": versions[-1].version, "creationDate": created}


def ssm_backend(account: str, region: str):
    from moto.ssm.models import ssm_backends

    return ssm_backends[account][region]


def install() -> None:
    SimpleSystemManagerBackend.put_parameter = _put_parameter
    SimpleSystemManagerBackend.delete_parameter = _delete_parameter
