"""The local AWS for ami-rollout: moto with the behaviours a rollout depends on, plus ministack.

Modules, one concern each:
  state      the simulation's shared state (scaled clock, bad AMIs, faults, refreshes) and its reset
  wire       protocol plumbing: CBOR for CloudWatch, fault injection, AWS-shaped errors
  policy     IAM policy evaluation (Allow/Deny, wildcards, conditions; unmodelled keys fail closed)
  authorization  every request of a role session checked against its role's policies, per operation
  accounts   STS AssumeRole refused as AWS does: the role must exist and its trust policy allow the caller
  templates  launch template versions: SourceVersion, ClientToken, deletion, paging
  images     AMIs: deregistration protection, disabled AMIs, no launches from deregistered/disabled ones,
             AMIs shared across accounts (launch permissions)
  copies     CopyImage: pending on the scaled clock, tags, encryption recorded, ClientToken; unique AMI names
  grants     KMS grants as AWS keeps them (Name retries, cross-account key ARNs, ListGrants)
  keys       KMS as one question: may this principal use this key (state, grants, key policy, its own
             policies), asked for KMS requests, Auto Scaling launches and root replacements
  alarms     DescribeAlarms with its filters combined
  fleet      group instances: launch/terminate, per-instance version, failed launches, ECS container instances
  lifecycle  lifecycle hooks that fire: Pending:Wait / Terminating:Wait, Complete/RecordLifecycleAction*, timeouts
  refresh    instance refresh: Start/Describe/Cancel/Rollback and the replacement engine
  rootvolumes  CreateReplaceRootVolumeTask / DescribeReplaceRootVolumeTasks, status checks, volume content
  agents     standalone ECS agents whose identity lives on the root volume; container instances that drain
  services   ECS services that reach steady state, or keep failing tasks on a bad AMI
  control    the /_localaws control endpoint
  server     the moto server with all of the above loaded
  stepfunctions  ministack with a Map-failure fix
  ministack_iam  IAM for what ministack serves: role sessions' requests and the state machine's own
             calls, decided by moto (authorization.answer)
  lambda_service  the local Lambda: each function runs with its execution role's session; 4 KB environments
  deploy     the functions and the state machine to ministack, as the SAM template would
  rollout    start a rollout as EventBridge does; watch it as a timeline
  demo       the main job (make demo)
  launcher   up/down/status: moto + ministack on loopback ports, one env file
  seed       a realistic fleet
"""
