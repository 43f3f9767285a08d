//! What the commands print: tables padded by hand, ANSI colours only for a
//! person at a terminal, JSON for scripts, and a spinner on stderr while a
//! command waits.

use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Colours go to a terminal only: never into a pipe, a file, `--json`, or
/// when `NO_COLOR` is set (<https://no-color.org>: to anything but empty).
#[derive(Clone, Copy, Debug)]
pub struct Style {
    colour: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    Plain,
    Bold,
    Green,
    Red,
    Dim,
}

impl Style {
    pub fn for_stdout(json: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style { colour: !json && !no_color && std::io::stdout().is_terminal() }
    }

    pub fn paint(self, paint: Paint, text: &str) -> String {
        let code = match paint {
            _ if !self.colour => return text.to_string(),
            Paint::Plain => return text.to_string(),
            Paint::Bold => "1",
            Paint::Green => "32",
            Paint::Red => "31",
            Paint::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// One cell: its text, and how to paint it.
pub struct Cell {
    text: String,
    paint: Paint,
}

impl Cell {
    pub fn painted(text: impl Into<String>, paint: Paint) -> Cell {
        Cell { text: text.into(), paint }
    }
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Cell {
        Cell::painted(text, Paint::Plain)
    }
}

/// Columns left-aligned under bold headers, two spaces apart.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, style: Style) -> String {
        // Widths count characters of the plain text: colour codes take no
        // room on the screen, and `µ` is one column.
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<(&str, Paint)>| {
            let last = cells.len() - 1;
            for (i, ((text, paint), width)) in cells.into_iter().zip(&widths).enumerate() {
                out.push_str(&style.paint(paint, text));
                if i < last {
                    let pad = width - text.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            // No trailing blanks where the last cells are empty.
            let trimmed = out.trim_end_matches(' ').len();
            out.truncate(trimmed);
            out.push('\n');
        };
        line(&mut out, self.headers.iter().map(|h| (*h, Paint::Bold)).collect());
        for row in &self.rows {
            line(&mut out, row.iter().map(|c| (c.text.as_str(), c.paint)).collect());
        }
        out
    }
}

/// Prints `value` as one line of JSON and flushes, so that a script reading
/// line by line sees it at once.
pub fn print_json(value: &serde_json::Value) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`rotor ... | head -1`) is the reader's choice, not an error.
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}

/// Prints text as it is and flushes.
pub fn print_text(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// A processing time given in nanoseconds, in the unit that suits it.
pub fn nanos(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns}ns")
    } else if ns < 1e6 {
        format!("{:.1}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// A spinner on stderr while the command waits, when stderr is a terminal;
/// it clears its line when dropped.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(message: impl Into<String>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let message = message.into();
        let task = tokio::spawn(async move {
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for frame in FRAMES.iter().cycle() {
                tick.tick().await;
                let mut stderr = std::io::stderr().lock();
                let _ = write!(stderr, "\r{frame} {message}");
                let _ = stderr.flush();
            }
        });
        Progress { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_by_visible_width_and_trim_line_ends() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["µµµ".into(), "x".into()]);
        t.row(vec!["b".into(), "".into()]);
        assert_eq!(t.render(Style { colour: false }), "A    LONGER\nµµµ  x\nb\n");
    }

    #[test]
    fn colour_wraps_the_text_but_not_the_padding() {
        let mut t = Table::new(&["H", "I"]);
        t.row(vec![Cell::painted("up", Paint::Green), "z".into()]);
        let text = t.render(Style { colour: true });
        assert!(text.contains("\x1b[32mup\x1b[0m  z"), "{text:?}");
    }

    #[test]
    fn times_take_the_unit_that_suits_them() {
        assert_eq!(nanos(812), "812ns");
        assert_eq!(nanos(41_230), "41.2µs");
        assert_eq!(nanos(3_100_000), "3.1ms");
        assert_eq!(nanos(1_200_000_000), "1.20s");
    }
}
