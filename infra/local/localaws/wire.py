"""Protocol plumbing between the real AWS SDKs and moto.

- CloudWatch over Smithy rpc-v2-cbor: today's aws-sdk-cloudwatch speaks only CBOR, which moto
  does not parse. The middleware turns a CBOR request into moto's awsJson1_0 and the answer back
  into CBOR, tagging timestamps (CBOR tag 1) from botocore's shape model.
- Authorization: a request signed by a role session is checked against the role's policies
  (authorization.py) before anything else, and refused in the service's own shape.
- Fault injection and AWS-shaped errors: every action goes through `guarded_call_action`, which
  answers an injected fault, and turns a moto crash or a missing action into a modelled AWS error
  in the request's own protocol instead of Werkzeug's HTML 500.
"""

import datetime
import io
import json

import botocore.session
import cbor2
from moto.core import responses as moto_responses
from moto.core import utils as moto_utils
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, BaseResponse

from . import authorization, state

CBOR_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
_cloudwatch_model = botocore.session.get_session().get_service_model("cloudwatch")


def _to_json_value(value):
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _to_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json_value(v) for v in value]
    if isinstance(value, bytes):
        return value.decode()
    return value


def _with_timestamps(shape, value):
    """Walk `value` along `shape`, turning timestamp members into datetimes (CBOR tag 1)."""
    if shape is None or value is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {
            k: _with_timestamps(shape.members.get(k), v) for k, v in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [_with_timestamps(shape.member, v) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _with_timestamps(shape.value, v) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, (int, float)):
            return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
        if isinstance(value, str):
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)
    return value


class CborShim:
    """WSGI middleware: rpc-v2-cbor in front of moto's awsJson1_0 CloudWatch."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(CBOR_PREFIX):
            return self.app(environ, start_response)
        operation = path[len(CBOR_PREFIX):]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        request = cbor2.loads(raw) if raw else {}
        body = json.dumps(_to_json_value(request)).encode()
        environ = dict(environ)
        environ.update(
            {
                "PATH_INFO": "/",
                "CONTENT_TYPE": "application/x-amz-json-1.0",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_AMZ_TARGET": f"GraniteServiceVersion20100801.{operation}",
                "wsgi.input": io.BytesIO(body),
            }
        )
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        answer = b"".join(self.app(environ, capture))
        payload = json.loads(answer) if answer.strip() else {}
        if "__type" in payload:
            # rpc-v2-cbor errors carry the shape name without its namespace.
            payload["__type"] = payload["__type"].split("#")[-1]
        else:
            output = _cloudwatch_model.operation_model(operation).output_shape
            payload = _with_timestamps(output, payload)
        encoded = cbor2.dumps(payload, datetime_as_timestamp=True)
        headers = [
            (k, v)
            for k, v in captured["headers"]
            if k.lower() not in ("content-type", "content-length")
        ]
        headers += [
            ("Content-Type", "application/cbor"),
            ("Content-Length", str(len(encoded))),
            ("smithy-protocol", "rpc-v2-cbor"),
        ]
        start_response(captured["status"], headers)
        return [encoded]


class _InjectedError(ServiceException):
    def __init__(self, code: str, message: str):
        super().__init__(code, message)


def _serialized_error(response: BaseResponse, code: str, message: str, status: int):
    status_code, headers, body = response.serialized(
        ActionResult(_InjectedError(code, message))
    )
    headers["status"] = status
    return status, headers, body


_original_call_action = BaseResponse.call_action


def _params(response: BaseResponse) -> dict:
    """The request's parameters under botocore's names (what authorization reads)."""
    try:
        response.parse_parameters(response.normalized_request)
        return dict(response.params)
    except Exception:  # a protocol botocore's parser does not take here: JSON bodies as sent
        try:
            return json.loads(response.body or "{}")
        except (TypeError, ValueError):
            return {}


def _authorization_refusal(response: BaseResponse, action: str):
    session = authorization.session_of(response.get_access_key())
    if session is None or not authorization.ENFORCED:
        return None
    prefix = {"monitoring": "cloudwatch"}.get(response.service_name, response.service_name)
    call = authorization.Call(_params(response), response.current_account, response.region)
    return authorization.check(session, f"{prefix}:{action}", call)


def guarded_call_action(self: BaseResponse):
    action = self._get_action()
    sim = state.sim()
    sim.calls[action] = sim.calls.get(action, 0) + 1
    refused = _authorization_refusal(self, action)
    if refused is not None:
        return _serialized_error(self, refused.code, refused.message, refused.status)
    for fault in sim.faults:
        if fault.operation == action and fault.count > 0:
            if fault.after > 0:
                fault.after -= 1
                break
            fault.count -= 1
            return _serialized_error(self, fault.code, fault.message, fault.status)
    try:
        return _original_call_action(self)
    except NotImplementedError:
        return _serialized_error(
            self,
            "InvalidAction",
            f"The local AWS does not implement {action} (moto gap; see infra/local/README.md)",
            400,
        )
    except ServiceException:
        raise
    except Exception as err:  # a moto crash: answer like AWS, not with an HTML page
        return _serialized_error(
            self, "InternalFailure", f"local AWS error in {action}: {err!r}", 500
        )


_method_names: dict = {}


def method_names_from_class(clazz) -> frozenset:
    """moto lists a response class's methods with `inspect` on every request (3 ms of a 26 ms
    DescribeImages, measured); the classes do not change once the extensions are installed."""
    if clazz not in _method_names:
        _method_names[clazz] = frozenset(moto_utils.method_names_from_class(clazz))
    return _method_names[clazz]


def install() -> None:
    BaseResponse.call_action = guarded_call_action
    moto_responses.method_names_from_class = method_names_from_class
