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
}

impl Output {
    pub fn new(format: Format, debug: bool) -> Self {
        Self { format, debug }
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
            eprintln!("{}: {}", failure.name, failure.message);
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
