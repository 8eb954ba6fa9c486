//! `ami-rollout`: the operator's command line. It asks before acting (`plan`), starts and follows
//! executions of the deployed state machine (`start`, `watch`, `list`, `status`, `redrive`,
//! `undo`), answers their approval gates (`approve`, `reject`), and tells what is not on the approved image (`drift`). The standard AWS credential chain and
//! endpoint variables apply, so the same binary works against AWS and the local AWS.

mod approve;
mod args;
mod context;
mod drift;
mod executions;
mod failure;
mod fleet_view;
mod history;
mod output;
mod plan;
mod settings;
mod start;
mod steps;
mod targets;
mod undo;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use context::{Context, Global};
use output::Output;

#[derive(Parser)]
#[command(name = "ami-rollout", version, about, long_about = None, after_help = failure::EXIT_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What a trigger or a manual start would do, with nothing changed: the AMI per region, the
    /// waves and their targets with their rollback points, what is skipped or refused and why.
    Plan(plan::PlanArgs),
    /// Start a rollout by hand (checked as the state machine would check it, first).
    Start(start::StartArgs),
    /// Follow an execution live until it ends; exits with its outcome.
    Watch(watch::WatchArgs),
    /// Recent executions of the state machine.
    List(executions::ListArgs),
    /// One execution's outcome, target by target.
    Status(executions::ExecutionArg),
    /// Redrive a failed, aborted or timed-out execution from the step that did not complete.
    Redrive(executions::RedriveArgs),
    /// Roll a successful rollout back, as a new execution: every target it changed returns to its
    /// rollback point. Shows what it would do and asks first.
    Undo(undo::UndoArgs),
    /// Let an execution waiting at its approval gate go on to its next wave.
    Approve(approve::ApproveArgs),
    /// Refuse the next wave of an execution waiting at its approval gate: every target it
    /// touched is rolled back.
    Reject(approve::RejectArgs),
    /// Groups and standalone instances not on the approved AMI; exit status 2 when any is found.
    Drift(drift::DriftArgs),
    /// The per-target settings the functions plan with: show them, validate a file, put it.
    Settings(settings::SettingsArgs),
    /// Shell completions, written to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Output into a closed pipe (`ami-rollout list | head -1`) ends the program quietly, as it
    // does every Unix tool, instead of a panic of println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "ami-rollout",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let out = Output::new(cli.global.output, cli.global.debug);
    let context = match Context::load(&cli.global).await {
        Ok(context) => context,
        Err(failure) => {
            out.error(&failure);
            return ExitCode::from(failure.exit.code());
        }
    };
    let result = match cli.command {
        Command::Plan(args) => plan::run(&context, &out, args).await,
        Command::Start(args) => start::run(&context, &out, args).await,
        Command::Watch(args) => watch::run(&context, &out, args).await,
        Command::List(args) => executions::list(&context, &out, args).await,
        Command::Status(args) => executions::status(&context, &out, args).await,
        Command::Redrive(args) => executions::redrive(&context, &out, args).await,
        Command::Undo(args) => undo::run(&context, &out, args).await,
        Command::Drift(args) => drift::run(&context, &out, args).await,
        Command::Approve(args) => approve::approve(&context, &out, args).await,
        Command::Reject(args) => approve::reject(&context, &out, args).await,
        Command::Settings(args) => settings::run(&context, &out, args).await,
        Command::Completions { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(failure) => {
            out.error(&failure);
            ExitCode::from(failure.exit.code())
        }
    }
}
