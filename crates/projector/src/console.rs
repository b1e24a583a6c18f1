//! Standard error, shared by the progress bars and the log: a log line is written with the bars
//! cleared and drawn again below it, so that the log scrolls above a rebuild's bar instead of
//! breaking it. Where stderr is not a terminal no bar is drawn and lines are written as they are.

use std::io::Write;
use std::sync::OnceLock;

use indicatif::MultiProgress;
use tracing_subscriber::fmt::MakeWriter;

/// The bars drawn on this process's stderr (none until a rebuild shows one).
pub fn bars() -> MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new).clone()
}

/// A `tracing` writer to stderr that keeps its lines clear of the bars.
#[derive(Debug, Clone)]
pub struct LogWriter {
    bars: MultiProgress,
}

impl LogWriter {
    /// Writes to stderr, around the process's bars.
    pub fn stderr() -> Self {
        Self { bars: bars() }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over a whole event at once, so a line is never split by a redraw.
        self.bars
            .suspend(|| std::io::stderr().lock().write_all(bytes))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
