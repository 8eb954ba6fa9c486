"""EC2 Image Builder, as much as a rollout reads of it: GetImage, and a build finishing.

moto has no Image Builder. Here `build()` (control endpoint POST /_localaws/image-build) plays a
pipeline finishing an image as AWS does it: the image's AMIs, one per distribution (region, and
account when the distribution shares it elsewhere: that account owns its copy), tagged
`Ec2ImageBuilderArn` in the building account; the image record GetImage answers (arn, name,
version, state AVAILABLE, sourcePipelineArn, dateCreated, outputResources.amis with region, image,
name, accountId); the "EC2 Image Builder Image State Change" event (resources: the image ARN only)
to the local bus; and, when the build names an SNS topic (its infrastructure configuration's), the
notification Image Builder publishes there: the image itself as JSON. GetImage is served on the
moto port for requests signed for the imagebuilder service (`AWS_ENDPOINT_URL_IMAGEBUILDER`),
REST-JSON `GET /GetImage?imageBuildVersionArn=`; an unknown ARN is ResourceNotFoundException.
"""

import json
import re
import urllib.request
import uuid

from . import authorization, clock, events, images, state

AUTH_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")
CREDENTIAL = re.compile(r"Credential=([^/]+)/")


def image_arn(region: str, account: str, name: str, version: str, build: int) -> str:
    return f"arn:aws:imagebuilder:{region}:{account}:image/{name.lower()}/{version}/{build}"


def _make_ami(region: str, name: str, arn: str, owner: str) -> str:
    """One distributed AMI of the build, owned by the account the distribution puts it in."""
    return images.made_like_public(owner, region, name, f"Image Builder image {arn}",
                                   tags={"Ec2ImageBuilderArn": arn, "CreatedBy": "EC2 Image Builder"}).id


def build(account: str, region: str, body: dict) -> dict:
    """A pipeline's build of `body["name"]` finishing AVAILABLE with AMIs in `body["regions"]`
    (and `body["accounts"]`, which get their own copy in each region)."""
    name, version = body["name"], body.get("version", "1.0.0")
    builds = [i for i in state.sim().builder_images.values() if i["name"] == name and i["version"] == version]
    arn = image_arn(region, account, name, version, len(builds) + 1)
    now = clock.utcnow()
    ami_name = f"{name} {now.strftime('%Y-%m-%dT%H-%M-%S.%f')[:-3]}Z"
    amis = []
    for target_region in body.get("regions") or [region]:
        for owner in [account, *body.get("accounts", [])]:
            amis.append({"region": target_region, "image": _make_ami(target_region, ami_name, arn, owner),
                         "name": ami_name, "accountId": owner})
    pipeline = body.get("pipeline")  # None: a build started outside a pipeline
    image = {"arn": arn, "name": name, "version": f"{version}/{len(builds) + 1}", "type": "AMI",
             "platform": "Linux", "state": {"status": "AVAILABLE"}, "buildType": "USER_INITIATED",
             "dateCreated": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
             "outputResources": {"amis": amis}, "tags": {}}
    if pipeline:
        image["sourcePipelineArn"] = pipeline
    state.sim().builder_images[arn] = image
    events.emit([{"Source": "aws.imagebuilder", "DetailType": "EC2 Image Builder Image State Change",
                  "Resources": [arn], "Account": account, "Region": region,
                  "Detail": {"previous-state": {"status": "DISTRIBUTING"}, "state": {"status": "AVAILABLE"}}}])
    if body.get("topicArn"):
        _notify(body["topicArn"], image, account)
    return image


def _notify(topic: str, image: dict, account: str) -> None:
    """Image Builder's SNS notification: the image as its message (SNS is ministack's)."""
    base = events.bus_url()
    if not base:
        return
    message = {**image, "version": image["version"].split("/")[0], "buildVersion": int(image["version"].split("/")[1]),
               "versionlessArn": image["arn"].rsplit("/", 2)[0], "accountId": account,
               "buildExecutionId": str(uuid.uuid4())}
    body = json.dumps({"TopicArn": topic, "Message": json.dumps(message)}).encode()
    url = base.replace("/_localaws/events", "/_localaws/publish")
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST",
                                                      headers={"Content-Type": "application/json"}), timeout=10).read()
    except OSError:
        pass  # no such topic: Image Builder's publish fails and the build stays AVAILABLE



def serves(environ) -> bool:
    match = AUTH_SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return bool(match) and match.group(1) == "imagebuilder"


def handle(environ, start_response):
    """The Image Builder API calls a rollout makes (GetImage)."""
    from urllib.parse import parse_qs

    def answer(status, payload, error=None):
        body = json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if error:
            headers.append(("x-amzn-ErrorType", error))
        start_response(status, headers)
        return [body]

    path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
    if (method, path) != ("GET", "/GetImage"):
        return answer("400 Bad Request", {"message": f"{method} {path} is not served here"}, "InvalidRequestException")
    arn = parse_qs(environ.get("QUERY_STRING", "")).get("imageBuildVersionArn", [""])[0]
    # A role session's GetImage is authorized on the image build version (SAR) like any request;
    # Image Builder refuses with ForbiddenException (403, its model's error for it).
    key = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    decided = authorization.answer({"accessKey": key.group(1) if key else "", "action": "imagebuilder:GetImage",
                                    "resource": arn})
    if not decided["allowed"]:
        return answer("403 Forbidden", {"message": decided["message"]}, "ForbiddenException")
    image = state.sim().builder_images.get(arn)
    if image is None:
        return answer("404 Not Found", {"message": f"The resource {arn} does not exist."}, "ResourceNotFoundException")
    return answer("200 OK", {"requestId": str(uuid.uuid4()), "image": image})
