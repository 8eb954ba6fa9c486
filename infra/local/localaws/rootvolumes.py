"""Replacing an instance's root volume as AWS does it (CreateReplaceRootVolumeTask), and volume
content to see what a replacement kept.

moto 5.2.5 has no CreateReplaceRootVolumeTask or DescribeReplaceRootVolumeTasks, and its status
checks always pass. Here (ec2 query protocol):

- CreateReplaceRootVolumeTask restores the root from its launch state (no ImageId, SnapshotId or
  VolumeId: a new volume from the snapshot the root was made from, if any), from a snapshot of
  one of this instance's roots (its lineage), from an AMI (ImageId), or puts a given volume in
  (VolumeId: `available`, unattached, in the instance's zone, encrypted if the root is), as the EC2
  user guide ("Replace a root volume") and the API reference describe them. The instance must be
  `running` with an EBS root; the AMI must match the instance's architecture and virtualization
  type and its root must be at least the size of the current one. AWS documents these rules but
  not the error codes that refuse them; here: IncorrectInstanceState (not running),
  UnsupportedOperation (instance-store root), InvalidParameterCombination (two sources),
  InvalidParameterValue (AMI mismatch, a snapshot of another lineage, a volume that does not fit),
  IncorrectState (a task of the instance still running). ClientToken answers the same task.
- The task is `pending`, then `in-progress` while the instance reboots (its status checks read
  `initializing`), then `succeeded`: the new root (the size of the old one; from an AMI, the size
  of its root mapping) is attached at the root device with the old one's DeleteOnTermination; the
  instance id, data volumes, network interfaces and addresses stay. The replaced root is detached
  and kept (`available`), or deleted with DeleteReplacedRootVolume. Replaced with an AMI, the
  instance reports that AMI (ImageId); otherwise its ImageId stays (AWS documents only the AMI
  case). `failing-detached` / `failed-detached` (an instance left without a root) are not modelled.
- A bad AMI (POST /_localaws/bad-ami): mode `root` makes the task fail (`failing`, then `failed`;
  the original root stays attached), as does an AMI whose encrypted snapshot's key the caller may
  not use through EC2 (keys.py; that the task fails rather than the call is **ours**: AWS
  documents neither); mode `boot` lets the task succeed and the instance's status
  checks fail (`impaired`), as an AMI that does not boot on that instance would. The checks follow
  the AMI the current root was made from, so a root put back with VolumeId boots again.
- DescribeReplaceRootVolumeTasks: by ReplaceRootVolumeTaskIds or the `instance-id` filter.
- Volume content: `POST /_localaws/volume-files {"volumeId", "path", "content"}` writes a file on a
  volume, `GET /_localaws/volume-files?volumeId=` reads them. A snapshot keeps its volume's files
  as they were; a volume made from a snapshot starts with them; a root made from an AMI starts
  empty.

Timing (simulated seconds): PENDING_SECONDS, then REBOOT_SECONDS in progress.
"""

import copy as _copy
import logging
import secrets

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.models.instances import Instance
from moto.ec2.responses.instances import InstanceResponse

from . import authorization, clock, images, keys, state

log = logging.getLogger("localaws.rootvolumes")

PENDING_SECONDS = 10.0
REBOOT_SECONDS = 60.0
RUNNING = ("pending", "in-progress", "failing")


class _Refused(EC2ClientError):
    pass


def _now_iso() -> str:
    """As EC2 writes a task's times: UTC, milliseconds, `Z`."""
    return clock.iso()


def root_volume(instance: Instance):
    """(device, BlockDeviceType) of the instance's root volume, or (device, None)."""
    for device in (instance.root_device_name, "/dev/sda1", "/dev/xvda"):
        if device in instance.block_device_mapping:
            return device, instance.block_device_mapping[device]
    return instance.root_device_name, None


def _lineage(instance: Instance) -> set:
    sim = state.sim()
    lineage = sim.root_lineage.setdefault(instance.id, set())
    _, root = root_volume(instance)
    if root is not None:
        lineage.add(root.volume_id)
        sim.volume_images.setdefault(root.volume_id, instance.image_id)
    return lineage


def booted_image(instance: Instance) -> str:
    """The AMI the instance's root was made from: what it boots, whatever ImageId it reports (a
    root put back with VolumeId boots the AMI it was made from)."""
    _, root = root_volume(instance)
    return state.sim().volume_images.get(root.volume_id, instance.image_id) if root else instance.image_id


def _public(task: dict) -> dict:
    return {k: v for k, v in task.items() if not k.startswith("_")}


def create_replace_root_volume_task(self: InstanceResponse):
    backend = self.ec2_backend
    instance_id = self._get_param("InstanceId")
    image_id = self._get_param("ImageId")
    snapshot_id = self._get_param("SnapshotId")
    volume_id = self._get_param("VolumeId")
    delete_replaced = str(self._get_param("DeleteReplacedRootVolume", False)).lower() == "true"
    token = self._get_param("ClientToken")
    tags = {t["Key"]: t["Value"] for spec in self._get_param("TagSpecifications", [])
            if spec.get("ResourceType") == "replace-root-volume-task" for t in spec.get("Tags", [])}
    instance = backend.get_instance(instance_id)  # InvalidInstanceID.NotFound
    self.error_on_dryrun()
    sim, place = state.sim(), (self.current_account, self.region)
    if token and (place + (token,)) in sim.root_tokens:
        task = next(t for t in sim.root_tasks[place] if t["ReplaceRootVolumeTaskId"] == sim.root_tokens[place + (token,)])
        return ActionResult({"ReplaceRootVolumeTask": _public(task)})
    if sum(1 for source in (image_id, snapshot_id, volume_id) if source) > 1:
        raise _Refused("InvalidParameterCombination", "Specify at most one of ImageId, SnapshotId and VolumeId.")
    if instance.state != "running":
        raise _Refused("IncorrectInstanceState",
                       f"The instance '{instance_id}' is not in the 'running' state.")
    device, root = root_volume(instance)
    if getattr(instance, "root_device_type", "ebs") != "ebs" or root is None:
        raise _Refused("UnsupportedOperation",
                       f"The instance '{instance_id}' has an instance store root volume; its root volume cannot be replaced.")
    if any(t["InstanceId"] == instance_id and t["TaskState"] in RUNNING for t in sim.root_tasks.get(place, [])):
        raise _Refused("IncorrectState", f"A root volume replacement task is already in progress for '{instance_id}'.")
    if image_id:
        refused = images.refusal(self.current_account, self.region, image_id)
        if refused is not None:
            raise refused  # not shared with the account, deregistered, disabled
        # The account's own AMI or one shared with it (moto's backend knows only its own).
        image = images.find(self.current_account, self.region, image_id) \
            or backend.describe_images(ami_ids=[image_id])[0]  # InvalidAMIID.NotFound
        for attribute, name in (("architecture", "architecture"), ("virtualization_type", "virtualization type")):
            mine = getattr(backend.amis.get(instance.image_id), attribute, None) if instance.image_id in backend.amis \
                else getattr(instance, attribute, None)
            theirs = getattr(image, attribute, None)
            if mine and theirs and mine != theirs:
                raise _Refused("InvalidParameterValue",
                               f"The {name} of AMI '{image_id}' ({theirs}) does not match the instance's ({mine}).")
        image_size, old_size = _image_root_size(image), backend.get_volume(root.volume_id).size
        if image_size is not None and image_size < old_size:
            raise _Refused("InvalidParameterValue",
                           f"The root volume of AMI '{image_id}' ({image_size} GiB) is smaller than the instance's ({old_size} GiB).")
    if snapshot_id:
        snapshot = backend.get_snapshot(snapshot_id)  # InvalidSnapshot.NotFound
        if snapshot.volume is None or snapshot.volume.id not in _lineage(instance):
            raise _Refused("InvalidParameterValue",
                           f"The snapshot '{snapshot_id}' was not created from a root volume of the instance '{instance_id}'.")
    if volume_id:
        volume, old = backend.get_volume(volume_id), backend.get_volume(root.volume_id)  # InvalidVolume.NotFound
        zone = _zone(instance)
        if volume.status != "available" or volume.attachment is not None:
            raise _Refused("InvalidParameterValue", f"The volume '{volume_id}' is not available.")
        if _zone_name(volume) != zone:
            raise _Refused("InvalidParameterValue",
                           f"The volume '{volume_id}' is not in the instance's Availability Zone ({zone}).")
        if old.encrypted and not volume.encrypted:
            raise _Refused("InvalidParameterValue", f"The volume '{volume_id}' must be encrypted, as the root volume is.")
    _lineage(instance)
    task = {
        "ReplaceRootVolumeTaskId": f"replacevol-{secrets.token_hex(9)[:17]}",
        "InstanceId": instance_id, "TaskState": "pending", "StartTime": _now_iso(),
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        "DeleteReplacedRootVolume": delete_replaced,
        "_started": sim.clock.now(), "_device": device, "_original": root.volume_id,
    }
    if image_id:
        task["ImageId"] = image_id
        # EC2 builds the new root for the caller: with its rights on the key of an encrypted AMI.
        task["_key_refused"] = _volume_key_refusal(self, image_id)
    if snapshot_id:
        task["SnapshotId"] = snapshot_id
    if volume_id:
        task["_volume"] = volume_id
    sim.root_tasks.setdefault(place, []).append(task)
    if token:
        sim.root_tokens[place + (token,)] = task["ReplaceRootVolumeTaskId"]
    return ActionResult({"ReplaceRootVolumeTask": _public(task)})


def _volume_key_refusal(response: InstanceResponse, image_id: str) -> str | None:
    """Why the caller cannot have a volume built from the AMI's encrypted snapshot (keys.py);
    the account's administrator is not checked."""
    session = authorization.session_of(response.get_access_key())
    if session is None or not authorization.ENFORCED:
        return None
    account, region = response.current_account, response.region
    why = keys.volume_refusal(authorization.principal(session), images.find(account, region, image_id), region)
    if why:
        log.info("root volume replacement from %s will fail: %s", image_id, why)
    return why


def describe_replace_root_volume_tasks(self: InstanceResponse):
    self.error_on_dryrun()
    ids = self._get_param("ReplaceRootVolumeTaskIds", [])
    filters = self._filters_from_querystring()
    tasks = list(state.sim().root_tasks.get((self.current_account, self.region), []))
    if ids:
        unknown = set(ids) - {t["ReplaceRootVolumeTaskId"] for t in tasks}
        if unknown:
            raise _Refused("InvalidReplaceRootVolumeTaskId.NotFound",
                           f"The replace root volume task ID '{sorted(unknown)[0]}' does not exist")
        tasks = [t for t in tasks if t["ReplaceRootVolumeTaskId"] in ids]
    if "instance-id" in filters:
        tasks = [t for t in tasks if t["InstanceId"] in filters["instance-id"]]
    return ActionResult({"ReplaceRootVolumeTasks": [_public(t) for t in tasks]})


def _zone_name(volume) -> str:
    return volume.zone.name if hasattr(volume.zone, "name") else volume.zone


def _zone(instance: Instance) -> str:
    return instance._placement.zone


def _image_root_size(image) -> int | None:
    """The size of the AMI's root mapping, when it has one."""
    for mapping in getattr(image, "block_device_mapping", None) or []:
        if mapping.get("DeviceName") == image.root_device_name and mapping.get("Ebs", {}).get("VolumeSize"):
            return int(mapping["Ebs"]["VolumeSize"])
    return None


def _new_root(backend, old, source_snapshot: str | None, size: int):
    new = backend.create_volume(size=size, zone_name=_zone_name(old), snapshot_id=source_snapshot,
                                encrypted=old.encrypted, volume_type=old.volume_type)
    if source_snapshot is None:
        state.sim().volume_files[new.id] = {}
    return new


def _swap(backend, instance: Instance, device: str, old, new, delete_old: bool) -> None:
    """`new` becomes the root at `device`, with the old root's DeleteOnTermination; the old one is
    detached, and deleted if asked."""
    delete_on_termination = instance.block_device_mapping[device].delete_on_termination
    backend.detach_volume(old.id, instance.id, device)
    backend.attach_volume(new.id, instance.id, device, delete_on_termination)
    state.sim().root_lineage.setdefault(instance.id, set()).add(new.id)
    if delete_old:
        backend.delete_volume(old.id)


def _ami_root_size(backend, image_id: str, old) -> int:
    image = images.find(backend.account_id, backend.region_name, image_id)
    return (_image_root_size(image) if image else None) or old.size


def root_from_image(backend, instance: Instance, image_id: str) -> str:
    """The instance's root replaced at once by a new one from `image_id` (an Auto Scaling refresh
    with the ReplaceRootVolume strategy does this); the old root is kept. Returns its id."""
    device, root = root_volume(instance)
    old = backend.get_volume(root.volume_id)
    _lineage(instance)
    new = _new_root(backend, old, None, _ami_root_size(backend, image_id, old))
    state.sim().volume_images[new.id] = image_id
    _swap(backend, instance, device, old, new, False)
    instance.image_id = image_id
    return old.id


def _replace(backend, instance: Instance, task: dict) -> None:
    """The task's replacement: the new root from its source; files as the source had them."""
    old = backend.get_volume(task["_original"])
    if "_volume" in task:
        new = backend.get_volume(task["_volume"])
    elif "SnapshotId" in task:
        new = _new_root(backend, old, task["SnapshotId"], old.size)
    elif "ImageId" in task:
        # moto's AMIs carry no root snapshot worth modelling: an empty root of the AMI's size.
        new = _new_root(backend, old, None, _ami_root_size(backend, task["ImageId"], old))
        state.sim().volume_images[new.id] = task["ImageId"]
    else:  # the launch state: the snapshot the root was made from
        new = _new_root(backend, old, old.snapshot_id, old.size)
    _swap(backend, instance, task["_device"], old, new, task["DeleteReplacedRootVolume"])
    if "ImageId" in task:
        instance.image_id = task["ImageId"]


def tick() -> None:
    sim = state.sim()
    now = sim.clock.now()
    for (account, region), tasks in list(sim.root_tasks.items()):
        backend = ec2_backends[account][region]
        for task in tasks:
            if task["TaskState"] not in RUNNING:
                continue
            elapsed = now - task["_started"]
            if task["TaskState"] == "pending" and elapsed >= PENDING_SECONDS:
                task["TaskState"] = "in-progress"
            if task["TaskState"] == "in-progress" and elapsed >= PENDING_SECONDS + REBOOT_SECONDS:
                if sim.bad_amis.get(task.get("ImageId")) == "root" or task.get("_key_refused"):
                    task["TaskState"] = "failing"
                else:
                    instance = backend.get_instance(task["InstanceId"])
                    _replace(backend, instance, task)
                    task.update(TaskState="succeeded", CompleteTime=_now_iso())
            elif task["TaskState"] == "failing":
                task.update(TaskState="failed", CompleteTime=_now_iso())


def rebooting(instance: Instance) -> bool:
    backend = instance.ec2_backend
    tasks = state.sim().root_tasks.get((backend.account_id, backend.region_name), [])
    return any(t["InstanceId"] == instance.id and t["TaskState"] == "in-progress" for t in tasks)


def _check(passed: bool, initializing: bool) -> dict:
    if initializing:
        return {"Details": [{"Name": "reachability", "Status": "initializing"}], "Status": "initializing"}
    if passed:
        return {"Details": [{"Name": "reachability", "Status": "passed"}], "Status": "ok"}
    return {"Details": [{"Name": "reachability", "Status": "failed",
                         "ImpairedSince": _now_iso()}], "Status": "impaired"}


def _instance_status(self: Instance) -> dict:
    if self.state_code != 16:
        return {"Status": "not-applicable"}
    return _check(state.sim().bad_amis.get(booted_image(self)) != "boot", rebooting(self))


def _system_status(self: Instance) -> dict:
    if self.state_code != 16:
        return {"Status": "not-applicable"}
    return _check(True, False)


def _attached_ebs_status(self: Instance) -> dict:
    if self.state_code != 16:
        return {"Status": "not-applicable"}
    return _check(True, rebooting(self))


_original_create_snapshot = EBSBackend.create_snapshot
_original_create_volume = EBSBackend.create_volume


def _create_snapshot(self, volume_id, description, owner_id=None, from_ami=None):
    snapshot = _original_create_snapshot(self, volume_id, description, owner_id, from_ami)
    sim = state.sim()
    sim.snapshot_files[snapshot.id] = _copy.deepcopy(sim.volume_files.get(volume_id, {}))
    return snapshot


def _create_volume(self, size, zone_name, snapshot_id=None, *args, **kwargs):
    volume = _original_create_volume(self, size, zone_name, snapshot_id, *args, **kwargs)
    if snapshot_id:
        sim = state.sim()
        sim.volume_files[volume.id] = _copy.deepcopy(sim.snapshot_files.get(snapshot_id, {}))
    return volume


def write_file(volume_id: str, path: str, content: str) -> dict:
    files = state.sim().volume_files.setdefault(volume_id, {})
    files[path] = content
    return files


def files(volume_id: str) -> dict:
    return dict(state.sim().volume_files.get(volume_id, {}))


def install() -> None:
    InstanceResponse.create_replace_root_volume_task = create_replace_root_volume_task
    InstanceResponse.describe_replace_root_volume_tasks = describe_replace_root_volume_tasks
    Instance.instance_status = property(_instance_status)
    Instance.system_status = property(_system_status)
    Instance.attached_ebs_status = property(_attached_ebs_status)
    EBSBackend.create_snapshot = _create_snapshot
    EBSBackend.create_volume = _create_volume
