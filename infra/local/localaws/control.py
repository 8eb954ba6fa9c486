"""The control endpoint, `/_localaws/...` on the moto port: what tests and the demo use to steer
the local AWS. Bodies and answers are JSON; account and region default to moto's.

  POST   /_localaws/reset                  moto's backends and every extension's state, but the
                                           deployed roles and their sessions (authorization.py)
  POST   /_localaws/bad-ami                {"imageId", "mode": "boot"|"ecs"|"root"|null}
  POST   /_localaws/faults                 {"operation", "code", "status": 400, "count": 1, "after": 0}
  DELETE /_localaws/faults
  POST   /_localaws/alarm                  {"name", "state": "ALARM"|"OK"|..., "reason"}
  POST   /_localaws/advance                {"seconds"}: move the scaled clock forward
  POST   /_localaws/copy-time              {"seconds"}: how long a CopyImage takes from now on
                                           (simulated; null: copies.COPY_SECONDS, 600)
  GET    /_localaws/copy-time
  POST   /_localaws/volume-files           {"volumeId", "path", "content"}: a file on a volume
  GET    /_localaws/volume-files?volumeId= the files on a volume (rootvolumes.py)
  GET    /_localaws/fleet                  groups, instances, refreshes, container instances, services
  GET    /_localaws/calls                  how many times each operation was called
  POST   /_localaws/image-build            {"name", "version", "regions", "accounts", "pipeline",
                                           "topicArn"}: an Image Builder pipeline finishing a build
                                           (imagebuilder.py)
  POST   /_localaws/public-parameter       {"name", "imageName", "creationDate"}: AWS publishing a
                                           new AMI behind one of its public parameters (events.py)
  POST   /_localaws/events-flush           waits until every service event so far reached the bus

Requests signed for the imagebuilder service are Image Builder's API (imagebuilder.py).
"""

import json
from urllib.parse import parse_qs

from moto.core.base_backend import BackendDict
from moto.moto_api._internal.models import moto_api_backend

from . import authorization, copies, events, fleet, imagebuilder, rootvolumes, state

PREFIX = "/_localaws/"
DEFAULT_ACCOUNT, DEFAULT_REGION = "123456789012", "us-east-1"


def _json(start_response, status, payload):
    body = json.dumps(payload, default=str, indent=1).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def fleet_view(account, region) -> dict:
    from . import refresh

    asg = fleet.autoscaling_backends[account][region]
    ecs = fleet.ecs(account, region)
    groups = {}
    for name, group in sorted(asg.autoscaling_groups.items()):
        groups[name] = {
            "launchTemplate": group.launch_template,
            "desired": group.desired_capacity,
            "instances": [
                {
                    "id": s.instance.id,
                    "imageId": s.instance.image_id,
                    "lifecycle": s.lifecycle_state,
                    "health": s.health_status,
                    "version": (s.launch_template or {}).get("Version"),
                    "protected": bool(s.protected_from_scale_in),
                }
                for s in group.instance_states
            ],
            "refreshes": [r.view() for r in reversed(state.sim().refreshes.get((account, region, name), []))],
            "activeRefresh": bool(refresh.active(account, region, name)),
        }
    clusters = {}
    for cname in sorted(ecs.clusters):
        clusters[cname] = {
            "containerInstances": [
                {"ec2InstanceId": ci.ec2_instance_id, "status": ci.status,
                 "amiId": ci.attributes.get("ecs.ami-id")}
                for ci in ecs.container_instances.get(cname, {}).values()
            ],
            "services": [
                {"name": s.name, "desired": s.desired_count, "running": s.running_count,
                 "rolloutState": (s.deployments or [{}])[0].get("rolloutState"),
                 "events": [e["message"] for e in s.events[:5]]}
                for s in ecs.services.values() if s.cluster_name == cname
            ],
        }
    return {"simulatedSeconds": round(state.sim().clock.now(), 1), "groups": groups,
            "clusters": clusters, "badAmis": state.sim().bad_amis}


class Control:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if imagebuilder.serves(environ):
            return imagebuilder.handle(environ, start_response)
        if not path.startswith(PREFIX):
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        account = query.get("account", DEFAULT_ACCOUNT)
        region = query.get("region", DEFAULT_REGION)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
        except ValueError:
            return _json(start_response, "400 Bad Request", {"error": "body is not JSON"})
        action = path[len(PREFIX):].strip("/")
        sim = state.sim()
        if (method, action) == ("POST", "reset"):
            kept = authorization.deployment()
            moto_api_backend.reset()
            authorization.restore(kept)
            state.reset()
            return _json(start_response, "200 OK", {"reset": True})
        if (method, action) == ("POST", "bad-ami"):
            if body.get("mode") in ("boot", "ecs", "root"):
                sim.bad_amis[body["imageId"]] = body["mode"]
            elif body.get("mode") is None:
                sim.bad_amis.pop(body.get("imageId"), None)
            else:
                return _json(start_response, "400 Bad Request", {"error": "mode must be boot, ecs, root or null"})
            return _json(start_response, "200 OK", {"badAmis": sim.bad_amis})
        if (method, action) == ("POST", "faults"):
            fault = state.Fault(operation=body["operation"], code=body.get("code", "Throttling"),
                                status=int(body.get("status", 400)), count=int(body.get("count", 1)),
                                after=int(body.get("after", 0)))
            sim.faults.append(fault)
            return _json(start_response, "200 OK", {"faults": [f.__dict__ for f in sim.faults]})
        if (method, action) == ("DELETE", "faults"):
            sim.faults.clear()
            return _json(start_response, "200 OK", {"faults": []})
        if (method, action) == ("POST", "alarm"):
            backend = fleet.cloudwatch(account, region)
            if body.get("name") not in backend.alarms:
                return _json(start_response, "404 Not Found", {"error": f"no alarm {body.get('name')}"})
            backend.set_alarm_state(body["name"], body.get("reason", "set by the control endpoint"),
                                    None, body.get("state", "ALARM"))
            return _json(start_response, "200 OK", {"alarm": body["name"], "state": body.get("state", "ALARM")})
        if (method, action) == ("POST", "advance"):
            sim.clock.advance(float(body.get("seconds", 0)))
            return _json(start_response, "200 OK", {"simulatedSeconds": sim.clock.now()})
        if (method, action) == ("POST", "copy-time"):
            seconds = body.get("seconds")
            if seconds is not None and (not isinstance(seconds, (int, float)) or seconds < 0):
                return _json(start_response, "400 Bad Request", {"error": "seconds must be a number >= 0 or null"})
            sim.copy_seconds = None if seconds is None else float(seconds)
            return _json(start_response, "200 OK", {"copySeconds": copies.copy_seconds()})
        if (method, action) == ("GET", "copy-time"):
            return _json(start_response, "200 OK", {"copySeconds": copies.copy_seconds()})
        if (method, action) == ("POST", "volume-files"):
            if not body.get("volumeId") or not body.get("path"):
                return _json(start_response, "400 Bad Request", {"error": "volumeId and path are required"})
            files = rootvolumes.write_file(body["volumeId"], body["path"], str(body.get("content", "")))
            return _json(start_response, "200 OK", {"volumeId": body["volumeId"], "files": files})
        if (method, action) == ("GET", "volume-files"):
            return _json(start_response, "200 OK", {"volumeId": query.get("volumeId"),
                                                    "files": rootvolumes.files(query.get("volumeId", ""))})
        if (method, action) == ("POST", "image-build"):
            if not body.get("name"):
                return _json(start_response, "400 Bad Request", {"error": "name is required"})
            return _json(start_response, "200 OK", imagebuilder.build(account, region, body))
        if (method, action) == ("POST", "public-parameter"):
            if not str(body.get("name", "")).startswith("/aws/service/") or not body.get("creationDate"):
                return _json(start_response, "400 Bad Request",
                             {"error": "name (under /aws/service/) and creationDate are required"})
            return _json(start_response, "200 OK", events.publish_public_parameter(
                account, region, body["name"], body.get("imageName", "al2023-ami-ecs-hvm-local-x86_64"),
                body["creationDate"]))
        if (method, action) == ("POST", "events-flush"):
            events.flush()
            return _json(start_response, "200 OK", {"flushed": True})
        if (method, action) == ("POST", "authorize"):
            return _json(start_response, "200 OK", authorization.answer(body))
        if (method, action) == ("GET", "fleet"):
            return _json(start_response, "200 OK", fleet_view(account, region))
        if (method, action) == ("GET", "calls"):
            return _json(start_response, "200 OK", sim.calls)
        if (method, action) == ("DELETE", "calls"):
            sim.calls.clear()
            return _json(start_response, "200 OK", {})
        return _json(start_response, "404 Not Found", {"error": f"unknown control action {method} {action}"})
