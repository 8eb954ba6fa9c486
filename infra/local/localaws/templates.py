"""Launch template versions as AWS documents them, where moto differs:

- CreateLaunchTemplateVersion with SourceVersion copies that version's data and then overrides
  only the fields given (moto keeps only the given fields); a missing SourceVersion is an error.
- ClientToken makes the call idempotent: the same token returns the version it created.
- DeleteLaunchTemplateVersions works (moto: not implemented); the default version cannot be
  deleted; deleted numbers are never reused.
- DescribeLaunchTemplateVersions pages with NextToken instead of silently truncating.
"""

import copy

from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidLaunchTemplateVersionNotFound
from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ec2.responses.launch_templates import LaunchTemplates

from . import state


def _merge(base, override):
    """AWS semantics: top-level fields given in the request replace the source's."""
    merged = copy.deepcopy(base)
    merged.update(override)
    return merged


def _live(template):
    return [v for v in template.versions if not getattr(v, "deleted", False)]


def _get_version(self, num):
    if str(num).lower() == "$latest":
        return _live(self)[-1]
    if str(num).lower() == "$default":
        return self.default_version()
    try:
        version = self.versions[int(num) - 1]
    except (IndexError, ValueError):
        raise InvalidLaunchTemplateVersionNotFound(template_id=self.id, version=num)
    if getattr(version, "deleted", False) or int(num) < 1:
        raise InvalidLaunchTemplateVersionNotFound(template_id=self.id, version=num)
    return version


def _latest_version(self):
    return _live(self)[-1]


def _version_view(self, template, version):
    return {
        "CreateTime": version.create_time,
        "CreatedBy": f"arn:{self.partition}:iam::{self.current_account}:root",
        "DefaultVersion": template.is_default(version),
        "LaunchTemplateData": version.data,
        "LaunchTemplateId": template.id,
        "LaunchTemplateName": template.name,
        "VersionDescription": version.description,
        "VersionNumber": version.number,
    }


def _template(self):
    name = self._get_param("LaunchTemplateName")
    tmpl_id = self._get_param("LaunchTemplateId")
    if tmpl_id:
        return self.ec2_backend.get_launch_template(tmpl_id)
    return self.ec2_backend.get_launch_template_by_name(name)


def create_launch_template_version(self):
    template = _template(self)
    data = self._get_param("LaunchTemplateData", {})
    token = self._get_param("ClientToken")
    source = self._get_param("SourceVersion")
    self.error_on_dryrun()
    tokens = state.sim().client_tokens.setdefault(
        (self.current_account, self.region, template.id), {}
    )
    if token and token in tokens:
        version = template.versions[tokens[token] - 1]
    else:
        if source is not None:
            data = _merge(template.get_version(source).data, data)
        version = template.create_version(data, self._get_param("VersionDescription"))
        if token:
            tokens[token] = version.number
    return ActionResult({"LaunchTemplateVersion": _version_view(self, template, version)})


def delete_launch_template_versions(self):
    template = _template(self)
    deleted, failed = [], []
    for number in self._get_param("Versions", []):
        item = {"LaunchTemplateId": template.id, "LaunchTemplateName": template.name}
        try:
            version = template.get_version(number)
        except InvalidLaunchTemplateVersionNotFound:
            failed.append({**item, "VersionNumber": int(number) if str(number).isdigit() else 0,
                           "ResponseError": {"Code": "launchTemplateVersionDoesNotExist",
                                             "Message": "The specified launch template version does not exist."}})
            continue
        if template.is_default(version):
            failed.append({**item, "VersionNumber": version.number,
                           "ResponseError": {"Code": "launchTemplateVersionIsDefault",
                                             "Message": "You cannot delete the default version of a launch template."}})
            continue
        version.deleted = True
        deleted.append({**item, "VersionNumber": version.number})
    return ActionResult({
        "SuccessfullyDeletedLaunchTemplateVersions": deleted,
        "UnsuccessfullyDeletedLaunchTemplateVersions": failed,
    })


def describe_launch_template_versions(self):
    max_results = self._get_int_param("MaxResults") or 200
    start = int(self._get_param("NextToken") or 0)
    versions = self._get_param("Versions", [])
    min_version = self._get_int_param("MinVersion")
    max_version = self._get_int_param("MaxVersion")
    self.error_on_dryrun()
    if self._get_param("LaunchTemplateId") or self._get_param("LaunchTemplateName"):
        template = _template(self)
        if versions:
            found = [(template, template.get_version(v)) for v in versions]
        else:
            found = [
                (template, v)
                for v in _live(template)
                if (min_version is None or v.number >= min_version)
                and (max_version is None or v.number <= max_version)
            ]
    else:
        # Without a template: $Latest and/or $Default of every template (the moto check stays).
        found = []
        for (template, version) in self.ec2_backend.describe_launch_template_versions(
            None, None, versions, None, None, 10**9
        ):
            found.append((template, version))
    page = found[start:start + max_results]
    result = {"LaunchTemplateVersions": [_version_view(self, t, v) for t, v in page]}
    if start + max_results < len(found):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)


def install() -> None:
    LaunchTemplate.get_version = _get_version
    LaunchTemplate.latest_version = _latest_version
    LaunchTemplates.create_launch_template_version = create_launch_template_version
    LaunchTemplates.delete_launch_template_versions = delete_launch_template_versions
    LaunchTemplates.describe_launch_template_versions = describe_launch_template_versions
