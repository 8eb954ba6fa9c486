use crate::groups::*;
use crate::instances;
use crate::reach::*;
use crate::resolve::*;
use crate::selection::*;
use crate::waves::*;

use rollout_core::StepError;
use rollout_core::aws::mock::{Rules, mock};
use rollout_core::config::Config;
use rollout_core::fleet::GroupTemplate;
use rollout_core::model::{Ami, MAX_TARGETS, Skipped, Target, TargetKind, VersionReference};
use rollout_core::settings::SettingsMap;
use rollout_core::trigger::Overrides;
use serde_json::json;

fn ami() -> Ami {
    Ami {
        id: "ami-0000000000000abc0".into(),
        name: "golden".into(),
        architecture: "x86_64".into(),
        owner_id: "111122223333".into(),
    }
}

fn template(version: &str) -> Option<Result<GroupTemplate, String>> {
    Some(Ok(GroupTemplate {
        id: Some("lt-1".into()),
        name: None,
        version: version.into(),
        mixed_instances: false,
        overrides: 0,
    }))
}

/// A group whose template head is at version 3 (default 2), running `image` at `version`.
fn group(name: &str, version: &str, image: &str) -> GroupFacts {
    let number = match version {
        "$Latest" => 3,
        "$Default" => 2,
        n => n.parse().unwrap(),
    };
    GroupFacts {
        name: name.into(),
        template: template(version),
        template_id: Some("lt-1".into()),
        default_version: 2,
        current: Some((number, image.into())),
        current_architecture: Some("x86_64".into()),
        ..Default::default()
    }
}

const OLD: &str = "ami-00000000000000001";

#[test]
fn rollback_point_resolves_the_groups_reference_to_a_number() {
    for (version, number, reference) in [
        ("$Latest", 3, VersionReference::Latest),
        ("$Default", 2, VersionReference::Default),
        ("2", 2, VersionReference::Pinned),
    ] {
        let plan = decide_groups(
            &ami(),
            vec![group("web", version, OLD)],
            &SettingsMap::default(),
            None,
        )
        .unwrap();
        let point = plan.waves[0][0].template_point().unwrap();
        assert_eq!(
            (
                point.version,
                point.reference,
                point.image_id.as_str(),
                point.default_version
            ),
            (number, reference, OLD, 2),
            "{version}"
        );
    }
}

#[test]
fn preflight_refusals_fail_the_plan_naming_group_and_reason() {
    let mut no_template = group("legacy", "1", OLD);
    no_template.template = Some(Err("uses launch configuration lc-1; native rollback needs a launch template (migrate the group first)".into()));
    let mut ssm = group("ssm", "3", "resolve:ssm:/ami/linux/prod");
    ssm.current_architecture = None;
    let mut gone_version = group("gone", "9", OLD);
    gone_version.current = None;
    let mut gone_template = group("orphan", "1", OLD);
    gone_template.template_id = None;
    let mut gone_ami = group("stale", "3", OLD);
    gone_ami.current_architecture = None;
    for (g, expected) in [
        (
            no_template,
            "legacy: preflight refused the rollout: uses launch configuration lc-1",
        ),
        (
            ssm,
            "ssm: preflight refused the rollout: launch template lt-1 version 3 takes its ImageId from resolve:ssm:",
        ),
        (
            gone_version,
            "gone: preflight refused the rollout: version 9 of launch template lt-1 does not exist",
        ),
        (
            gone_template,
            "orphan: preflight refused the rollout: its launch template lt-1 does not exist",
        ),
        (
            gone_ami,
            "stale: preflight refused the rollout: its current AMI ami-00000000000000001 no longer exists",
        ),
    ] {
        let err = decide_groups(
            &ami(),
            vec![group("fine", "3", OLD), g],
            &SettingsMap::default(),
            None,
        )
        .unwrap_err();
        assert_eq!(err.name(), "PreflightFailed");
        assert!(err.to_string().starts_with(expected), "{err}");
    }
}

#[test]
fn several_refusals_are_listed_together() {
    let mut a = group("a", "3", OLD);
    a.template = Some(Err("has no launch template".into()));
    let mut b = group("b", "3", OLD);
    b.template = Some(Err("has no launch template".into()));
    let err = decide_groups(&ami(), vec![a, b], &SettingsMap::default(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a, b: preflight refused the rollout: a: has no launch template; b: has no launch template"
    );
}

#[test]
fn architecture_mismatch_makes_the_ami_unusable() {
    let mut arm = group("arm", "3", OLD);
    arm.current_architecture = Some("arm64".into());
    let err = decide_groups(&ami(), vec![arm], &SettingsMap::default(), None).unwrap_err();
    assert_eq!(err.name(), "AmiNotUsable");
    assert!(err.to_string().contains("group arm runs arm64"), "{err}");
}

#[test]
fn groups_already_on_the_ami_are_skipped_only_when_every_instance_is() {
    let new = ami().id;
    let mut done = group("done", "3", &new);
    done.instance_images = Some(vec![new.clone(), new.clone()]);
    let mut half = group("half", "3", &new);
    half.instance_images = Some(vec![new.clone(), OLD.into()]);
    let mut busy = group("busy", "3", &new);
    busy.rollout_in_progress = Some("exec-1".into());
    let plan = decide_groups(
        &ami(),
        vec![done, half, busy, group("web", "3", OLD)],
        &SettingsMap::default(),
        None,
    )
    .unwrap();
    let rolled: Vec<&str> = plan
        .waves
        .iter()
        .flatten()
        .map(|t| t.resource.as_str())
        .collect();
    assert_eq!(rolled, ["half", "web"]);
    assert_eq!(
        plan.skipped,
        vec![
            Skipped {
                group: "done".into(),
                reason: format!("already on {new}")
            },
            Skipped {
                group: "busy".into(),
                reason: format!("execution exec-1 is already rolling out {new} to it")
            },
        ]
    );
    assert_eq!(plan.target_count, 2);
}

#[test]
fn waves_follow_settings_or_the_explicit_order() {
    let groups = || {
        vec![
            group("web", "3", OLD),
            group("canary", "3", OLD),
            group("api", "3", OLD),
            group("batch", "3", OLD),
        ]
    };
    let settings = SettingsMap::parse(r#"{"canary": {"wave": 0}, "batch": {"wave": 2}}"#).unwrap();
    let names = |p: &Decided| {
        p.waves
            .iter()
            .map(|w| w.iter().map(|t| t.resource.clone()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&decide_groups(&ami(), groups(), &settings, None).unwrap()),
        [vec!["canary"], vec!["api", "web"], vec!["batch"]]
    );
    let explicit = vec![vec!["web".to_string()], vec!["batch".to_string()]];
    assert_eq!(
        names(&decide_groups(&ami(), groups(), &settings, Some(&explicit)).unwrap()),
        [vec!["web"], vec!["batch"], vec!["api", "canary"]]
    );
    let unknown = vec![vec!["nope".to_string()]];
    let err = decide_groups(&ami(), groups(), &settings, Some(&unknown)).unwrap_err();
    assert!(err.to_string().contains("wave names nope"), "{err}");
}

#[test]
fn plan_keeps_only_settings_of_its_targets() {
    let settings = SettingsMap::parse(
        r#"{"*": {"bakeSeconds": 60}, "web": {"wave": 0}, "elsewhere": {"wave": 3}}"#,
    )
    .unwrap();
    let plan = decide_groups(&ami(), vec![group("web", "3", OLD)], &settings, None).unwrap();
    assert_eq!(plan.settings.0.keys().collect::<Vec<_>>(), ["*", "web"]);
}

#[test]
fn the_largest_plan_is_accepted_and_one_target_more_is_refused_before_anything_changes() {
    let fleet = |n: usize| -> Vec<GroupFacts> {
        (0..n)
            .map(|i| group(&format!("fleet-group-{i:05}"), "$Latest", OLD))
            .collect()
    };
    let largest = decide_groups(&ami(), fleet(MAX_TARGETS), &SettingsMap::default(), None).unwrap();
    assert_eq!(largest.target_count, 5_000);
    assert_eq!(largest.waves.iter().map(Vec::len).sum::<usize>(), 5_000);

    let err = decide_groups(
        &ami(),
        fleet(MAX_TARGETS + 1),
        &SettingsMap::default(),
        None,
    )
    .unwrap_err();
    assert_eq!(err.name(), "InvalidInput");
    assert!(err.to_string().contains("5001 targets"), "{err}");
    assert!(err.to_string().contains("roll out in parts"), "{err}");
}

fn config() -> Config {
    Config::from_lookup(|_| None).unwrap()
}

#[tokio::test]
async fn bad_trigger_input_makes_no_aws_call() {
    // No rules: any AWS call would panic the test.
    let clients = Rules::default().clients();
    for input in [
        json!({}),
        json!({"amiId": "not-an-ami"}),
        json!({"amiId": "ami-12345678", "maxConcurrency": 0}),
        json!({"amiId": "ami-12345678", "settings": {"web": {"bakeSeconds": -1}}}),
    ] {
        let err = resolve(&clients, &config(), "exec", &input, 0)
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InvalidInput", "{input}: {err}");
    }
}

#[tokio::test]
async fn missing_parameter_is_invalid_input() {
    use aws_sdk_ssm::operation::get_parameter::GetParameterError;
    let missing = mock!(aws_sdk_ssm::Client::get_parameter)
        .match_requests(|r| r.name() == Some("/ami/linux/prod"))
        .then_error(|| {
            GetParameterError::ParameterNotFound(
                aws_sdk_ssm::types::error::ParameterNotFound::builder().build(),
            )
        });
    let clients = Rules {
        ssm: vec![&missing],
        ..Default::default()
    }
    .clients();
    let err = resolve(
        &clients,
        &config(),
        "exec",
        &json!({"parameterName": "/ami/linux/prod"}),
        0,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        StepError::invalid("SSM parameter /ami/linux/prod does not exist")
    );
}

#[tokio::test]
async fn unknown_ami_is_not_usable_and_no_group_is_read() {
    let param = mock!(aws_sdk_ssm::Client::get_parameter).then_output(|| {
        aws_sdk_ssm::operation::get_parameter::GetParameterOutput::builder()
            .parameter(
                aws_sdk_ssm::types::Parameter::builder()
                    .name("/ami/linux/prod")
                    .value("ami-0123456789abcdef0")
                    .build(),
            )
            .build()
    });
    let images = mock!(aws_sdk_ec2::Client::describe_images)
        .match_requests(|r| {
            r.image_ids() == ["ami-0123456789abcdef0"] && r.include_deprecated() == Some(true)
        })
        .then_output(|| {
            aws_sdk_ec2::operation::describe_images::DescribeImagesOutput::builder().build()
        });
    let clients = Rules {
        ssm: vec![&param],
        ec2: vec![&images],
        ..Default::default()
    }
    .clients();
    let err = resolve(
        &clients,
        &config(),
        "exec",
        &json!({"parameterName": "/ami/linux/prod"}),
        0,
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), "AmiNotUsable");
    assert!(
        err.to_string()
            .contains("does not exist in this account and region"),
        "{err}"
    );
}

#[tokio::test]
async fn plans_a_tagged_fleet_from_batched_describes() {
    use aws_sdk_autoscaling::types::{AutoScalingGroup as Asg, LaunchTemplateSpecification};
    use aws_sdk_ec2::types::{
        ArchitectureValues, Image, ImageState, LaunchTemplateVersion, ResponseLaunchTemplateData,
    };
    let new = "ami-0123456789abcdef0";
    let images = mock!(aws_sdk_ec2::Client::describe_images).then_compute_output(move |r| {
        let image = |id: &str| {
            Image::builder()
                .image_id(id)
                .state(ImageState::Available)
                .architecture(ArchitectureValues::X8664)
                .owner_id("111122223333")
                .build()
        };
        aws_sdk_ec2::operation::describe_images::DescribeImagesOutput::builder()
            .set_images(Some(r.image_ids().iter().map(|id| image(id)).collect()))
            .build()
    });
    let heads = mock!(aws_sdk_ec2::Client::describe_launch_template_versions)
        .match_requests(|r| r.launch_template_id().is_none() && r.versions() == ["$Latest", "$Default"])
        .then_output(|| {
            let v = |n: i64, default: bool| {
                LaunchTemplateVersion::builder()
                    .launch_template_id("lt-1")
                    .launch_template_name("web")
                    .version_number(n)
                    .default_version(default)
                    .launch_template_data(ResponseLaunchTemplateData::builder().image_id(format!("ami-0000000000000000{n}")).build())
                    .build()
            };
            aws_sdk_ec2::operation::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput::builder()
                .launch_template_versions(v(3, false))
                .launch_template_versions(v(2, true))
                .build()
        });
    let groups = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
        .match_requests(|r| r.filters().first().and_then(|f| f.name()) == Some("tag:ami-rollout:enabled"))
        .then_output(|| {
            let asg = |name: &str, version: &str| {
                Asg::builder()
                    .auto_scaling_group_name(name)
                    .auto_scaling_group_arn(format!("arn:aws:autoscaling:us-east-1:111122223333:autoScalingGroup:1:autoScalingGroupName/{name}"))
                    .launch_template(LaunchTemplateSpecification::builder().launch_template_id("lt-1").version(version).build())
                    .build()
            };
            aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(asg("web", "$Latest"))
                .auto_scaling_groups(asg("api", "$Default"))
                .auto_scaling_groups(asg("legacy-excluded", "1"))
                .build()
        });
    let clusters = mock!(aws_sdk_ecs::Client::list_clusters).then_output(|| {
        aws_sdk_ecs::operation::list_clusters::ListClustersOutput::builder().build()
    });
    // No standalone instance carries the tag.
    let instances = mock!(aws_sdk_ec2::Client::describe_instances).then_output(|| {
        aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput::builder().build()
    });
    let volumes = mock!(aws_sdk_ec2::Client::describe_volumes).then_output(|| {
        aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput::builder().build()
    });
    let clients = Rules {
        ec2: vec![&images, &heads, &instances, &volumes],
        autoscaling: vec![&groups],
        ecs: vec![&clusters],
        ..Default::default()
    }
    .clients();
    let config = Config::from_lookup(|name| {
        (name == "EXCLUDED_ASGS").then(|| "legacy-excluded".to_string())
    })
    .unwrap();
    let plan = resolve(&clients, &config, "exec", &json!({"amiId": new}), 0)
        .await
        .unwrap()
        .into_plan()
        .unwrap();
    assert_eq!(plan.ami.id, new);
    let points: Vec<(&str, i64, &str)> = plan.waves[0]
        .iter()
        .map(|t| {
            (
                t.resource.as_str(),
                t.template_point().unwrap().version,
                t.rollback_point.image_id(),
            )
        })
        .collect();
    assert_eq!(
        points,
        [
            ("api", 2, "ami-00000000000000002"),
            ("web", 3, "ami-00000000000000003")
        ]
    );
    assert_eq!(
        plan.skipped,
        vec![Skipped {
            group: "legacy-excluded".into(),
            reason: "excluded (EXCLUDED_ASGS)".into()
        }]
    );
    assert_eq!(
        (plan.max_concurrency, plan.trigger.as_str()),
        (5, "manual start with ami-0123456789abcdef0")
    );
}

/// `group` in `account` and `region`, whose region's AMI is `ami` there.
fn placed(name: &str, account: &str, region: &str, ami_there: Option<Ami>) -> GroupFacts {
    let (key, value) = rollout_core::reach::WORKLOAD_OPT_IN;
    GroupFacts {
        account: Some(account.into()),
        region: Some(region.into()),
        ami: ami_there,
        tags: [(key.to_string(), value.to_string())].into(),
        ..group(name, "3", OLD)
    }
}

#[test]
fn a_workload_group_the_workload_role_may_not_change_is_refused_before_anything_changes() {
    let untagged = GroupFacts {
        tags: Default::default(),
        ..placed("web", "111111111111", "eu-west-1", None)
    };
    let err = decide_groups(&ami(), vec![untagged], &SettingsMap::default(), None).unwrap_err();
    assert_eq!(err.name(), "PreflightFailed");
    let said = err.to_string();
    assert!(said.contains("111111111111/eu-west-1/web"), "{said}");
    assert!(
        said.contains("not tagged ami-rollout:enabled=true"),
        "{said}"
    );
    assert!(
        said.contains("workload role of account 111111111111"),
        "{said}"
    );
    // At home the functions' own roles change any group the reach names.
    decide_groups(
        &ami(),
        vec![group("web", "3", OLD)],
        &SettingsMap::default(),
        None,
    )
    .unwrap();
}

fn in_eu() -> Ami {
    Ami {
        id: "ami-0000000000000e0e0".into(),
        ..ami()
    }
}

#[test]
fn targets_across_the_reach_are_named_by_place_and_roll_to_their_regions_ami() {
    let facts = vec![
        placed("web", "111111111111", "us-east-1", None),
        placed("web", "111111111111", "eu-west-1", Some(in_eu())),
        placed("web", "222222222222", "eu-west-1", Some(in_eu())),
        placed("api", "222222222222", "us-east-1", None),
    ];
    let plan = decide_groups(&ami(), facts, &SettingsMap::default(), None).unwrap();
    let targets: Vec<(String, &str)> = plan.waves[0]
        .iter()
        .map(|t| (t.name(), t.ami.id.as_str()))
        .collect();
    assert_eq!(
        targets,
        [
            ("111111111111/eu-west-1/web".into(), "ami-0000000000000e0e0"),
            ("111111111111/us-east-1/web".into(), "ami-0000000000000abc0"),
            ("222222222222/eu-west-1/web".into(), "ami-0000000000000e0e0"),
            ("222222222222/us-east-1/api".into(), "ami-0000000000000abc0"),
        ]
    );
}

#[test]
fn waves_name_groups_targets_accounts_and_regions_each_taking_what_is_left() {
    let facts = || {
        vec![
            placed("web", "111111111111", "us-east-1", None),
            placed("api", "111111111111", "us-east-1", None),
            placed("web", "111111111111", "eu-west-1", Some(in_eu())),
            placed("web", "222222222222", "us-east-1", None),
            placed("api", "222222222222", "eu-west-1", Some(in_eu())),
        ]
    };
    let names = |waves: &[&[&str]]| -> Vec<Vec<String>> {
        let waves: Vec<Vec<String>> = waves
            .iter()
            .map(|w| w.iter().map(|e| e.to_string()).collect())
            .collect();
        decide_groups(&ami(), facts(), &SettingsMap::default(), Some(&waves))
            .unwrap()
            .waves
            .iter()
            .map(|w| w.iter().map(Target::name).collect())
            .collect()
    };
    assert_eq!(
        names(&[
            &["111111111111/us-east-1/web"],
            &["account:111111111111"],
            &["region:eu-west-1"]
        ]),
        [
            vec!["111111111111/us-east-1/web"],
            vec!["111111111111/eu-west-1/web", "111111111111/us-east-1/api"],
            vec!["222222222222/eu-west-1/api"],
            vec!["222222222222/us-east-1/web"],
        ]
    );
    // A group name takes that group in every account and region.
    assert_eq!(
        names(&[&["web"]]),
        [
            vec![
                "111111111111/eu-west-1/web",
                "111111111111/us-east-1/web",
                "222222222222/us-east-1/web"
            ],
            vec!["111111111111/us-east-1/api", "222222222222/eu-west-1/api"],
        ]
    );
    for selects_nothing in ["account:333333333333", "region:ap-south-1", "nope"] {
        let waves = vec![vec![selects_nothing.to_string()]];
        let err =
            decide_groups(&ami(), facts(), &SettingsMap::default(), Some(&waves)).unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains(selects_nothing), "{err}");
    }
    // Named again after an earlier wave took it.
    let twice = vec![
        vec!["account:111111111111".into()],
        vec!["111111111111/us-east-1/api".into()],
    ];
    assert!(decide_groups(&ami(), facts(), &SettingsMap::default(), Some(&twice)).is_err());
}

#[test]
fn a_refusal_in_another_account_names_the_target_by_place() {
    let mut stale = placed("web", "222222222222", "eu-west-1", Some(in_eu()));
    stale.current_architecture = None;
    let err = decide_groups(&ami(), vec![stale], &SettingsMap::default(), None).unwrap_err();
    assert_eq!(err.name(), "PreflightFailed");
    assert!(
        err.to_string()
            .starts_with("222222222222/eu-west-1/web: preflight refused"),
        "{err}"
    );
}

#[test]
fn a_manual_start_narrows_the_reach_only_within_the_configured_one() {
    let configured = vec!["111111111111".to_string(), "222222222222".to_string()];
    let check = rollout_core::reach::validate_account;
    assert_eq!(
        narrow("account", "TARGET_ACCOUNTS", &configured, None, check).unwrap(),
        configured
    );
    assert_eq!(
        narrow(
            "account",
            "TARGET_ACCOUNTS",
            &configured,
            Some(&["222222222222".to_string()]),
            check
        )
        .unwrap(),
        ["222222222222"]
    );
    for (asked, expected) in [
        (
            vec!["333333333333"],
            "333333333333 are not in TARGET_ACCOUNTS",
        ),
        (vec!["12"], "\"12\" is not an AWS account id"),
        (vec![], "accounts is empty"),
    ] {
        let asked: Vec<String> = asked.into_iter().map(str::to_string).collect();
        let err = narrow(
            "account",
            "TARGET_ACCOUNTS",
            &configured,
            Some(&asked),
            check,
        )
        .unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains(expected), "{err}");
    }
    let err = narrow(
        "region",
        "TARGET_REGIONS",
        &[],
        Some(&["eu-west-1".to_string()]),
        rollout_core::reach::validate_region,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("TARGET_REGIONS is not set"),
        "{err}"
    );
}

#[test]
fn the_home_place_alone_is_not_named() {
    assert_eq!(
        named_unless_home(vec![], Some("us-east-1")),
        vec![None::<String>]
    );
    assert_eq!(
        named_unless_home(vec!["us-east-1".into()], Some("us-east-1")),
        vec![None::<String>]
    );
    assert_eq!(
        named_unless_home(
            vec!["us-east-1".into(), "eu-west-1".into()],
            Some("us-east-1")
        ),
        vec![Some("us-east-1".to_string()), Some("eu-west-1".to_string())]
    );
    assert_eq!(
        named_unless_home(vec!["eu-west-1".into()], Some("us-east-1")),
        vec![Some("eu-west-1".to_string())]
    );
}

#[test]
fn exclusions_take_group_names_everywhere_or_target_names() {
    use aws_sdk_autoscaling::types::AutoScalingGroup as Asg;
    let config = Config::from_lookup(|name| {
        (name == "EXCLUDED_ASGS").then(|| "batch, 222222222222/eu-west-1/web".to_string())
    })
    .unwrap();
    let selection = Selection::of(&config, &Overrides::default()).unwrap();
    let place = Place {
        account: Some("222222222222".into()),
        region: Some("eu-west-1".into()),
        clients: Rules::default().clients(),
    };
    let groups = ["web", "api", "batch"]
        .into_iter()
        .map(|g| {
            (
                g.to_string(),
                Asg::builder().auto_scaling_group_name(g).build(),
            )
        })
        .collect();
    let (kept, skipped) = selection.exclude(&place, groups);
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["api"]);
    assert_eq!(
        skipped.iter().map(|s| s.group.as_str()).collect::<Vec<_>>(),
        ["222222222222/eu-west-1/batch", "222222222222/eu-west-1/web"]
    );
}

mod organization {
    use super::*;
    use aws_sdk_organizations::operation::list_accounts_for_parent::ListAccountsForParentOutput;
    use aws_sdk_organizations::operation::list_organizational_units_for_parent::ListOrganizationalUnitsForParentOutput;
    use aws_sdk_organizations::types::{Account, AccountStatus, OrganizationalUnit};
    use rollout_core::aws::mock::{RuleMode, mock_client};

    const PROD: &str = "ou-ab12-prod0001";
    const TEAM: &str = "ou-ab12-team0002";

    #[tokio::test]
    async fn a_unit_lists_its_active_accounts_and_those_of_the_units_below_it() {
        let accounts = mock!(aws_sdk_organizations::Client::list_accounts_for_parent)
            .then_compute_output(|r| {
                let account = |id: &str, status| Account::builder().id(id).status(status).build();
                let out = ListAccountsForParentOutput::builder();
                match r.parent_id() {
                    Some(PROD) => out
                        .accounts(account("111111111111", AccountStatus::Active))
                        .accounts(account("999999999999", AccountStatus::Suspended))
                        .build(),
                    Some(TEAM) => out
                        .accounts(account("222222222222", AccountStatus::Active))
                        .accounts(account("111111111111", AccountStatus::Active))
                        .build(),
                    _ => out.build(),
                }
            });
        let units = mock!(aws_sdk_organizations::Client::list_organizational_units_for_parent)
            .then_compute_output(|r| {
                let out = ListOrganizationalUnitsForParentOutput::builder();
                if r.parent_id() == Some(PROD) {
                    out.organizational_units(OrganizationalUnit::builder().id(TEAM).build())
                        .build()
                } else {
                    out.build()
                }
            });
        let organizations = mock_client!(
            aws_sdk_organizations,
            RuleMode::MatchAny,
            &[&accounts, &units]
        );
        let listed = organization_accounts(&organizations, &[PROD.to_string()])
            .await
            .unwrap();
        assert_eq!(listed, ["111111111111", "222222222222"]);
        let err = organization_accounts(&organizations, &["ou-ab12-empty003".to_string()])
            .await
            .unwrap_err();
        assert_eq!(err.name(), "InvalidInput");
        assert!(err.to_string().contains("hold no active account"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_listing_names_the_unit_and_where_listing_works() {
        // As Organizations answers a member account (awsJson 1.1).
        let denied = mock!(aws_sdk_organizations::Client::list_accounts_for_parent)
            .then_http_response(|| {
                aws_smithy_runtime_api::http::Response::new(
                    aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                    aws_smithy_types::body::SdkBody::from(
                        r#"{"__type":"AccessDeniedException","Message":"You don't have permissions to access this resource."}"#,
                    ),
                )
            });
        let organizations = mock_client!(aws_sdk_organizations, RuleMode::MatchAny, &[&denied]);
        let err = organization_accounts(&organizations, &[PROD.to_string()])
            .await
            .unwrap_err();
        assert_eq!(err.name(), "PreflightFailed");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("organizational unit {PROD}")),
            "{text}"
        );
        assert!(text.contains("AccessDeniedException"), "{text}");
        assert!(
            text.contains("management account or a delegated administrator"),
            "{text}"
        );
    }
}

fn standalone(id: &str, tags: &[(&str, &str)]) -> instances::PlacedInstance {
    let mut facts = rollout_core::samples::standalone_instance(id, OLD, 8);
    facts.tags = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    instances::PlacedInstance {
        account: None,
        region: None,
        ami: None,
        image: rollout_core::samples::root_image(&ami().id, 8).build(),
        facts,
        ecs: None,
    }
}

/// `id` as a container instance of cluster prod, in `status`, its agent connected or not.
fn container_host(id: &str, status: &str, connected: bool) -> instances::PlacedInstance {
    instances::PlacedInstance {
        ecs: Some(instances::Member {
            cluster: "prod".into(),
            container_instance: rollout_core::ecs::ContainerInstanceView {
                arn: format!("arn:aws:ecs:us-east-1:111111111111:container-instance/prod/{id}"),
                ec2_instance_id: id.into(),
                status: status.into(),
                agent_connected: connected,
                ami: Some(OLD.into()),
                running_tasks: 2,
                registered_at: None,
            },
        }),
        ..standalone(id, &[])
    }
}

#[test]
fn standalone_instances_join_the_plan_with_their_root_as_rollback_point() {
    let mut settings = SettingsMap::default();
    let canary = standalone(
        "i-canary",
        &[("Name", "bastion"), ("ami-rollout:wave", "0")],
    );
    instances::wave_from_tag(&mut settings, &canary.facts);
    let plan = decide_targets(
        &ami(),
        vec![group("web", "3", OLD)],
        vec![
            canary,
            standalone("i-build", &[]),
            standalone("i-member", &[("aws:autoscaling:groupName", "web")]),
            container_host("i-ecs", "ACTIVE", true),
        ],
        &settings,
        None,
    )
    .unwrap();
    let waves: Vec<Vec<(TargetKind, &str)>> = plan
        .waves
        .iter()
        .map(|w| w.iter().map(|t| (t.kind, t.resource.as_str())).collect())
        .collect();
    assert_eq!(
        waves,
        [
            vec![(TargetKind::Instance, "i-canary")],
            vec![
                (TargetKind::Instance, "i-build"),
                (TargetKind::Instance, "i-ecs"),
                (TargetKind::AutoScalingGroup, "web")
            ]
        ]
    );
    // A container instance is rolled out knowing its cluster, so it is drained first.
    let ecs = plan.waves[1]
        .iter()
        .find(|t| t.resource == "i-ecs")
        .unwrap();
    assert_eq!(ecs.ecs.as_ref().map(|e| e.cluster.as_str()), Some("prod"));
    assert_eq!(plan.waves[1][0].ecs, None);
    let canary = &plan.waves[0][0];
    assert_eq!(canary.instance_name.as_deref(), Some("bastion"));
    let point = canary.root_point().unwrap();
    assert_eq!(
        (point.root_volume_id.as_str(), point.image_id.as_str()),
        ("vol-i-canary", OLD)
    );
    assert_eq!(
        plan.skipped,
        [
            Skipped {
                group: "i-member".into(),
                reason: "member of Auto Scaling group web, which replaces its own instances: not a standalone instance".into()
            }
        ]
    );
}

#[test]
fn an_instance_whose_root_cannot_take_the_ami_refuses_the_plan_by_name() {
    let mut stopped = standalone("i-stopped", &[]);
    stopped.facts.state = "stopped".into();
    let mut big = standalone("i-big", &[]);
    big.facts.root_size = Some(100);
    let err = decide_targets(
        &ami(),
        Vec::new(),
        vec![stopped, big],
        &SettingsMap::default(),
        None,
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.name(), "PreflightFailed");
    assert!(text.contains("i-stopped: it is stopped"), "{text}");
    assert!(text.contains("i-big: the root of"), "{text}");
}

#[test]
fn a_container_instance_that_could_not_be_drained_refuses_the_plan_by_name() {
    let err = decide_targets(
        &ami(),
        Vec::new(),
        vec![
            container_host("i-draining", "DRAINING", true),
            container_host("i-lost", "ACTIVE", false),
        ],
        &SettingsMap::default(),
        None,
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.name(), "PreflightFailed");
    assert!(
        text.contains("i-draining: its container instance") && text.contains("is DRAINING"),
        "{text}"
    );
    assert!(
        text.contains("i-lost: its ECS agent") && text.contains("is disconnected"),
        "{text}"
    );
}

#[test]
fn replace_root_volume_is_refused_for_a_group_aws_would_refuse_it_for() {
    let settings =
        SettingsMap::parse(r#"{"web": {"refreshStrategy": "ReplaceRootVolume"}}"#).unwrap();
    let err = decide_groups(&ami(), vec![group("web", "3", OLD)], &settings, None).unwrap_err();
    assert_eq!(err.name(), "PreflightFailed");
    assert!(err.to_string().contains("mixed instances policy"), "{err}");
    let mut mixed = group("web", "3", OLD);
    mixed.template = Some(Ok(GroupTemplate {
        mixed_instances: true,
        overrides: 2,
        ..template("3").unwrap().unwrap()
    }));
    let plan = decide_groups(&ami(), vec![mixed], &settings, None).unwrap();
    assert_eq!(plan.target_count, 1);
    let err = SettingsMap::parse(r#"{"*": {"refreshStrategy": "Blue"}}"#)
        .and_then(|s| s.validate())
        .unwrap_err();
    assert!(err.to_string().contains("refreshStrategy"), "{err}");
}

#[test]
fn a_group_that_cannot_be_refreshed_is_refused_or_skipped_as_its_settings_say() {
    let mut stopped = group("batch", "1", OLD);
    stopped.suspended = vec!["Launch".into()];
    let groups = vec![group("web", "1", OLD), stopped];
    let err = decide_groups(&ami(), groups.clone(), &SettingsMap::default(), None).unwrap_err();
    assert_eq!(err.name(), "PreflightFailed");
    assert!(
        err.to_string().contains("its Launch process is suspended"),
        "{err}"
    );
    let skip = SettingsMap::parse(r#"{"batch": {"onSuspendedProcesses": "skip"}}"#).unwrap();
    let plan = decide_groups(&ami(), groups, &skip, None).unwrap();
    assert_eq!(plan.target_count, 1);
    assert_eq!(plan.skipped[0].group, "batch");
    assert!(
        plan.skipped[0].reason.contains(
            "resume-processes --auto-scaling-group-name batch --scaling-processes Launch"
        )
    );
}

#[test]
fn the_plan_says_which_suspended_processes_change_a_refresh() {
    let mut web = group("web", "1", OLD);
    web.suspended = vec!["AZRebalance".into(), "AlarmNotification".into()];
    let mut api = group("api", "1", OLD);
    api.suspended = vec!["ReplaceUnhealthy".into()];
    let plan = decide_groups(
        &ami(),
        vec![web, api, group("db", "1", OLD)],
        &SettingsMap::default(),
        None,
    )
    .unwrap();
    let notes: Vec<(&str, &str)> = plan
        .notes
        .iter()
        .map(|n| (n.target.as_str(), n.note.as_str()))
        .collect();
    assert_eq!(
        notes,
        [
            (
                "web",
                "AZRebalance is suspended: the zones are not rebalanced after the refresh"
            ),
            (
                "api",
                "ReplaceUnhealthy is suspended: an instance marked unhealthy is not replaced"
            ),
        ]
    );
    assert_eq!(
        SettingsMap::parse(r#"{"web": {"onSuspendedProcesses": "ignore"}}"#)
            .unwrap_err()
            .name(),
        "InvalidInput"
    );
}
