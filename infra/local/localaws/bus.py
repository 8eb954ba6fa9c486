"""The local EventBridge bus and Pipes, in the ministack process, for the events AWS services send.

1. Service events. AWS services put their events (aws.ssm, aws.imagebuilder, ...) on the default
   bus; no caller may use an `aws.*` source (NotAuthorizedForSourceException). The local fleet
   services run in moto's process, so they hand their events to `POST /_localaws/events` (a
   PutEvents body), which publishes them as the service would: matched against every rule of the
   bus and delivered to its targets (state machines, topics, functions) by ministack.

2. A service publishing to a topic (Image Builder's build notification): `POST /_localaws/publish`
   {"TopicArn", "Message"}, fanned out to the topic's subscriptions as SNS does.

3. Pipes with an SQS source. AWS: a pipe polls its queue, keeps the records that match its
   FilterCriteria (a JSON body is matched as JSON) and deletes the others, hands batches of up to
   SqsQueueParameters.BatchSize (default 10) records to the target, and deletes them once the
   target took them; a Standard state machine target is started (FIRE_AND_FORGET) with the batch
   as a JSON array of SQS records (messageId, receiptHandle, body as sent, attributes,
   messageAttributes, md5OfBody, eventSource aws:sqs, eventSourceARN, awsRegion). ministack 1.5.33
   polls DynamoDB stream sources only and keeps no source parameters. Here CreatePipe's
   SourceParameters are kept and a poller serves SQS sources with a state machine target.
"""

import json
import logging
import os
import threading
import time

from ministack import app
from ministack.services import eventbridge, pipes, sns

logger = logging.getLogger("localaws.bus")
_source_parameters: dict[str, dict] = {}  # pipe name -> CreatePipe's SourceParameters
_poller: threading.Thread | None = None
_poller_lock = threading.Lock()


def _reply(status: int, payload) -> tuple:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


_original_shortcuts = app._handle_post_body_shortcuts


async def _handle_post_body_shortcuts(method, path, headers, body, query_params, request_id):
    if method == "POST" and path in ("/_localaws/events", "/_localaws/publish"):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return _reply(400, {"error": "body is not JSON"})
        if path == "/_localaws/events":
            status, _, answer = eventbridge._put_events(data, allow_aws_source=True)
            return status, {"Content-Type": "application/json"}, answer
        try:
            published = sns.publish_internal(data.get("TopicArn", ""), data.get("Message", ""),
                                             data.get("Subject", ""))
        except sns.SnsPublishError as refused:
            return _reply(400, {"error": str(refused)})
        if published is None:
            return _reply(404, {"error": f"no topic {data.get('TopicArn')}"})
        return _reply(200, {"MessageId": published["message_id"]})
    return await _original_shortcuts(method, path, headers, body, query_params, request_id)


_original_create_pipe = pipes._create_pipe


def _create_pipe(name, body):
    answer = _original_create_pipe(name, body)
    if answer[0] == 200:
        _source_parameters[name] = body.get("SourceParameters") or {}
        _ensure_poller()
    return answer


_original_update_pipe = pipes._update_pipe
_original_delete_pipe = pipes._delete_pipe_op


def _update_pipe(name, body):
    answer = _original_update_pipe(name, body)
    if answer[0] == 200 and "SourceParameters" in body:
        _source_parameters[name] = body["SourceParameters"] or {}
    return answer


def _delete_pipe_op(name):
    answer = _original_delete_pipe(name)
    if answer[0] == 200:
        _source_parameters.pop(name, None)
    return answer


def _sqs():
    import boto3

    return boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{os.environ['GATEWAY_PORT']}",
                        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _record(message: dict, queue_arn: str) -> dict:
    return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"], "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}), "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": queue_arn.split(":")[3]}


def _matches(filters: list, record: dict) -> bool:
    """FilterCriteria: any pattern matches; the body is matched as JSON when it is JSON."""
    if not filters:
        return True
    tree = dict(record)
    try:
        tree["body"] = json.loads(record["body"])
    except ValueError:
        pass
    for f in filters:
        alternatives = eventbridge._compiled_pattern(f.get("Pattern", "{}")) or []
        if any(eventbridge._matches_detail(tree, alternative) for alternative in alternatives):
            return True
    return False


def _poll_queue(sqs, pipe: dict) -> None:
    queue_arn = pipe["Source"]
    account, name = queue_arn.split(":")[4], queue_arn.split(":")[5]
    url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    parameters = _source_parameters.get(pipe["Name"], {})
    batch_size = int((parameters.get("SqsQueueParameters") or {}).get("BatchSize", 10))
    filters = (parameters.get("FilterCriteria") or {}).get("Filters") or []
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(batch_size, 10),
                                   AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
    kept = []
    for message in messages:
        record = _record(message, queue_arn)
        if _matches(filters, record):
            kept.append(record)
        else:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    for start in range(0, len(kept), batch_size):
        batch = kept[start:start + batch_size]
        if pipes._start_state_machine_from_records(pipe["Target"], pipe, batch):
            for record in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])
        # Not taken: the records come back after their visibility timeout, as on AWS.


def _poll_forever() -> None:
    sqs = _sqs()
    while True:
        for _, _, pipe in list(pipes._iter_all_pipes()):
            source, target = pipe.get("Source", ""), pipe.get("Target", "")
            if pipe.get("CurrentState") != "RUNNING" or pipes._arn_service(source) != "sqs":
                continue
            if pipes._arn_service(target) != "states":
                logger.warning("pipe %s: only state machine targets are served for SQS sources", pipe["Name"])
                continue
            try:
                _poll_queue(sqs, pipe)
            except Exception:  # a queue deleted under the pipe, ...: try again on the next round
                logger.warning("pipe %s: polling %s failed", pipe["Name"], source, exc_info=True)
        time.sleep(0.5)


def _ensure_poller() -> None:
    global _poller
    with _poller_lock:
        if _poller is None:
            _poller = threading.Thread(target=_poll_forever, daemon=True, name="sqs-pipes")
            _poller.start()


def install() -> None:
    app._handle_post_body_shortcuts = _handle_post_body_shortcuts
    pipes._create_pipe = _create_pipe
    pipes._update_pipe = _update_pipe
    pipes._delete_pipe_op = _delete_pipe_op
