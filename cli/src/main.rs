//! `ami-rollout`: the operator's command line. It asks before acting (`plan`), starts and follows
//! executions of the deployed state machine (`start`, `watch`, `list`, `status`, `redrive`,
//! `undo`), answers their approval gates (`approve`, `reject`), and tells what is not on the approved image (`drift`). The standard AWS credential chain and
//! endpoint variables apply, so the same binary works against AWS and the local AWS.

mod abort;
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
mod waiting;
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
    #[command(
        after_help = "Examples:\n  ami-rollout plan --ami-id ami-0123456789abcdef0\n  ami-rollout plan --parameter-name /ami/linux/prod --target web --wave web --wave api,batch\n  ami-rollout --output json plan --input @trigger.json"
    )]
    Plan(plan::PlanArgs),
    /// Start a rollout by hand (checked as the state machine would check it, first).
    #[command(
        after_help = "Examples:\n  ami-rollout start --ami-id ami-0123456789abcdef0 --watch\n  ami-rollout start --parameter-name /ami/linux/prod --target web --name web-canary\n  ami-rollout start --input @trigger.json"
    )]
    Start(start::StartArgs),
    /// Follow an execution live until it ends; exits with its outcome.
    #[command(
        after_help = "Examples:\n  ami-rollout watch web-canary\n  ami-rollout --output json watch arn:aws:states:us-east-1:111111111111:execution:ami-rollout:web-canary"
    )]
    Watch(watch::WatchArgs),
    /// Recent executions of the state machine.
    #[command(
        after_help = "Examples:\n  ami-rollout list\n  ami-rollout list --status failed --max 50"
    )]
    List(executions::ListArgs),
    /// One execution's outcome, target by target.
    #[command(
        after_help = "Examples:\n  ami-rollout status web-canary\n  ami-rollout --output json status web-canary"
    )]
    Status(executions::ExecutionArg),
    /// Redrive a failed, aborted or timed-out execution from the step that did not complete.
    #[command(after_help = "Examples:\n  ami-rollout redrive web-canary --watch")]
    Redrive(executions::RedriveArgs),
    /// Roll a successful (or aborted) rollout back, as a new execution: every target it changed returns to its
    /// rollback point. Shows what it would do and asks first.
    #[command(
        after_help = "Examples:\n  ami-rollout undo web-canary --dry-run\n  ami-rollout undo web-canary --skip-changed --yes --watch"
    )]
    Undo(undo::UndoArgs),
    /// Stop a running rollout and bring back every target it touched (each checked again first),
    /// as a new execution.
    #[command(
        after_help = "Examples:\n  ami-rollout abort web-canary\n  ami-rollout abort web-canary --yes --watch"
    )]
    Abort(abort::AbortArgs),
    /// Let an execution waiting at its approval gate go on to its next wave.
    #[command(after_help = "Examples:\n  ami-rollout approve web-canary")]
    Approve(approve::ApproveArgs),
    /// Refuse the next wave of an execution waiting at its approval gate: every target it
    /// touched is rolled back.
    #[command(
        after_help = "Examples:\n  ami-rollout reject web-canary --reason \"p99 latency doubled on the canary\""
    )]
    Reject(approve::RejectArgs),
    /// Groups and standalone instances not on the approved AMI; exit status 6 when any is found.
    #[command(
        after_help = "Examples:\n  ami-rollout drift --parameter-name /ami/linux/prod\n  ami-rollout drift --ami-id ami-0123456789abcdef0 --format csv > drift.csv"
    )]
    Drift(drift::DriftArgs),
    /// The per-target settings the functions plan with: show them, validate a file, put it.
    #[command(
        after_help = "Examples:\n  ami-rollout settings show\n  ami-rollout settings validate settings.json\n  ami-rollout settings put settings.json"
    )]
    Settings(settings::SettingsArgs),
    /// The manual page (roff), written to standard output.
    #[command(after_help = "Examples:\n  ami-rollout man > ~/.local/share/man/man1/ami-rollout.1")]
    Man,
    /// Shell completions, written to standard output.
    #[command(
        after_help = "Examples:\n  ami-rollout completions bash > ~/.local/share/bash-completion/completions/ami-rollout"
    )]
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
    if let Command::Man = cli.command {
        return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(failure::Exit::Error.code()),
        };
    }
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
        Command::Abort(args) => abort::run(&context, &out, args).await,
        Command::Drift(args) => drift::run(&context, &out, args).await,
        Command::Approve(args) => approve::approve(&context, &out, args).await,
        Command::Reject(args) => approve::reject(&context, &out, args).await,
        Command::Settings(args) => settings::run(&context, &out, args).await,
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    };
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(failure) => {
            out.error(&failure);
            ExitCode::from(failure.exit.code())
        }
    }
}
