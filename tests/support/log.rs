//! What tracing writes at warn and above, kept in memory, for tests that
//! assert a warning was given.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The log of this test binary; `lines` counts the lines written.
#[derive(Clone)]
pub struct Log {
    text: Arc<Mutex<Vec<u8>>>,
    lines: Arc<watch::Sender<usize>>,
}

impl Log {
    /// Makes the capture the subscriber of the whole binary: every thread's
    /// events reach it, those of spawned tasks too.
    pub fn capture() -> Log {
        let log = Log { text: Arc::default(), lines: Arc::new(watch::channel(0).0) };
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        log
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// The warn lines that contain `needle`.
    pub fn warnings(&self, needle: &str) -> Vec<String> {
        self.text().lines().filter(|l| l.contains("WARN") && l.contains(needle)).map(str::to_string).collect()
    }

    /// The number of lines written, now and as it grows.
    pub fn lines(&self) -> watch::Receiver<usize> {
        self.lines.subscribe()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.lock().unwrap().extend_from_slice(buf);
        let new = buf.iter().filter(|b| **b == b'\n').count();
        self.lines.send_modify(|n| *n += new);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
