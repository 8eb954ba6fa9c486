//! How results are written: text for people (tables sized to the terminal), or JSON for programs.
//! Errors go to standard error as `Error: message`, or as a JSON object in JSON mode.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use crate::failure::Failure;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

pub struct Output {
    pub format: Format,
    /// `--debug`: an error's detail (what AWS or the SDK said) is printed too.
    pub debug: bool,
    pub paint: Paint,
}

/// Colour for people at a terminal: text output to one, unless `NO_COLOR` is set (no-color.org);
/// plain otherwise, so pipes and files get the same text as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    pub on: bool,
}

impl Paint {
    pub fn wanted(format: Format, terminal: bool, no_color: Option<&str>) -> Self {
        let refused = no_color.is_some_and(|v| !v.is_empty());
        Self {
            on: format == Format::Text && terminal && !refused,
        }
    }

    fn with(self, colour: anstyle::AnsiColor, text: &str) -> String {
        if !self.on {
            return text.to_string();
        }
        let style = anstyle::Style::new().fg_color(Some(colour.into())).bold();
        format!("{style}{text}{style:#}")
    }

    /// An outcome in its colour: green went well, red went wrong, yellow still going.
    pub fn good(self, text: &str) -> String {
        self.with(anstyle::AnsiColor::Green, text)
    }

    pub fn bad(self, text: &str) -> String {
        self.with(anstyle::AnsiColor::Red, text)
    }

    pub fn going(self, text: &str) -> String {
        self.with(anstyle::AnsiColor::Yellow, text)
    }

    /// An execution's status in its colour.
    pub fn status(self, status: rollout_core::model::ExecutionStatus) -> String {
        use rollout_core::model::ExecutionStatus as S;
        match status {
            S::Succeeded => self.good(status.as_str()),
            S::Running | S::PendingRedrive | S::Pending => self.going(status.as_str()),
            _ => self.bad(status.as_str()),
        }
    }
}

impl Output {
    pub fn new(format: Format, debug: bool) -> Self {
        use std::io::IsTerminal;
        let no_color = std::env::var("NO_COLOR").ok();
        Self {
            format,
            debug,
            paint: Paint::wanted(format, std::io::stdout().is_terminal(), no_color.as_deref()),
        }
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// One JSON document (or, in `watch`, one line of the stream).
    pub fn value<T: Serialize>(&self, value: &T) {
        match serde_json::to_string(value) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot encode the output: {e}"),
        }
    }

    pub fn error(&self, failure: &Failure) {
        let detail = failure.detail.as_ref().filter(|_| self.debug);
        if self.json() {
            let body = serde_json::json!({"error": failure.name, "message": failure.message,
                                          "detail": detail});
            eprintln!("{body}");
        } else {
            eprintln!("{}: {}", self.paint.bad(&failure.name), failure.message);
            if let Some(detail) = detail {
                eprintln!("  detail: {detail}");
            }
        }
    }
}

/// A table with a header row, wrapped to the terminal's width.
pub fn table<I, R>(header: &[&str], rows: I) -> Table
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = String>,
{
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row.into_iter().collect::<Vec<_>>());
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_for_text_at_a_terminal_without_no_color() {
        assert!(Paint::wanted(Format::Text, true, None).on);
        assert!(
            Paint::wanted(Format::Text, true, Some("")).on,
            "an empty NO_COLOR is unset"
        );
        assert!(!Paint::wanted(Format::Text, true, Some("1")).on);
        assert!(
            !Paint::wanted(Format::Text, false, None).on,
            "a pipe gets plain text"
        );
        assert!(!Paint::wanted(Format::Json, true, None).on);
        let plain = Paint { on: false };
        assert_eq!(plain.bad("FAILED"), "FAILED");
        assert_ne!(Paint { on: true }.bad("FAILED"), "FAILED");
    }
}
