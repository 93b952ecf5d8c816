//! Whole lines on stderr, each in one write(2).
//!
//! A master and its workers share one stderr, and scripts and tests read
//! the interface lines (`cachet: listening https 127.0.0.1:8443`,
//! `cachet: worker 1 pid 4242`, `cachet: ready`) off it. Rust's stderr is
//! unbuffered: `eprintln!("cachet: listening {kind} {addr}")` leaves in one
//! write per formatted piece (fourteen for that line: the address alone is
//! seven), and another process's line written between two of them mangles
//! both. Everything here formats a whole line into a buffer first and hands
//! it to the kernel in one call; a pipe keeps writes of up to `PIPE_BUF`
//! (4096) bytes whole, and our lines are far shorter.
//!
//! - [`say!`](crate::say) for the interface lines and fatal errors;
//! - [`Whole`] for tracing-subscriber, one write per event whatever the
//!   formatter does (it formats into a buffer of its own today, which is an
//!   implementation detail we do not lean on);
//! - [`install_panic_hook`] for panics, whose default hook writes the
//!   message and every backtrace frame piece by piece.
//!
//! Standard output needs nothing: std buffers it by line.
//!
//! A line that cannot be written (stderr closed, a full disk) is dropped:
//! losing a log line must not stop a router, where `eprintln!` would panic.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Writes the formatted line and a newline to stderr in one write(2).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::lines::say(::std::format_args!($($arg)*))
    };
}

/// What [`say!`](crate::say) expands to.
pub fn say(line: std::fmt::Arguments<'_>) {
    let mut out = OneWrite::new(io::stderr());
    let _ = writeln!(out, "{line}");
}

/// Collects everything written to it and hands it to `inner` in one
/// `write_all` when dropped: one write(2) unless the kernel takes less.
#[derive(Debug)]
pub struct OneWrite<W: Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> OneWrite<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buffer: Vec::with_capacity(256),
        }
    }
}

impl<W: Write> Write for OneWrite<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    /// Nothing: a flush in the middle of a line would split it. The line
    /// leaves when the writer is dropped.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for OneWrite<W> {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            let _ = self.inner.write_all(&self.buffer);
            let _ = self.inner.flush();
        }
    }
}

/// A tracing-subscriber writer that sends each event in one write: the
/// event is formatted into a [`OneWrite`], which writes it when the
/// subscriber drops it at the end of the event.
#[derive(Debug, Clone, Copy)]
pub struct Whole<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Whole<M> {
    type Writer = OneWrite<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneWrite::new(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        OneWrite::new(self.0.make_writer_for(meta))
    }
}

/// Replaces the default panic hook with one that writes the same report
/// (thread, location, message, and the backtrace when `RUST_BACKTRACE`
/// asks for one) in one write.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let report = panic_report(
            thread.name().unwrap_or("<unnamed>"),
            info.location(),
            payload_text(info.payload()),
            &std::backtrace::Backtrace::capture(),
        );
        let _ = OneWrite::new(io::stderr()).write_all(report.as_bytes());
    }));
}

/// The panic message, when the payload is text (`panic!` with a message
/// always makes a `&str` or a `String`).
fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "Box<dyn Any>"
    }
}

/// The report the default hook prints, as one string.
fn panic_report(
    thread: &str,
    location: Option<&std::panic::Location<'_>>,
    message: &str,
    backtrace: &std::backtrace::Backtrace,
) -> String {
    use std::backtrace::BacktraceStatus;
    use std::fmt::Write as _;
    let mut report = format!("thread '{thread}' panicked");
    if let Some(location) = location {
        let _ = write!(report, " at {location}");
    }
    let _ = writeln!(report, ":\n{message}");
    match backtrace.status() {
        BacktraceStatus::Captured => {
            let _ = writeln!(report, "stack backtrace:\n{backtrace}");
        }
        BacktraceStatus::Disabled => report.push_str(
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        ),
        _ => {}
    }
    report
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A sink that keeps each write call's bytes apart.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Calls {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(bytes.to_vec());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Calls {
        fn taken(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
                .into_iter()
                .map(|call| String::from_utf8(call).unwrap())
                .collect()
        }
    }

    #[test]
    fn a_formatted_line_leaves_in_one_write() {
        let calls = Calls::default();
        let (kind, addr): (&str, std::net::SocketAddr) =
            ("https", "127.0.0.1:8443".parse().unwrap());
        // Straight to the sink, the line takes one call per piece...
        writeln!(calls.clone(), "cachet: listening {kind} {addr}").unwrap();
        assert!(calls.taken().len() > 5);
        // ...through OneWrite, one call.
        writeln!(
            OneWrite::new(calls.clone()),
            "cachet: listening {kind} {addr}"
        )
        .unwrap();
        assert_eq!(calls.taken(), ["cachet: listening https 127.0.0.1:8443\n"]);
    }

    #[test]
    fn nothing_written_makes_no_call() {
        let calls = Calls::default();
        drop(OneWrite::new(calls.clone()));
        assert!(calls.taken().is_empty());
    }

    #[test]
    fn flushing_does_not_split_a_line() {
        let calls = Calls::default();
        {
            let mut out = OneWrite::new(calls.clone());
            write!(out, "cachet: worker {} ", 3).unwrap();
            out.flush().unwrap();
            writeln!(out, "pid {}", 4242).unwrap();
        }
        assert_eq!(calls.taken(), ["cachet: worker 3 pid 4242\n"]);
    }

    #[test]
    fn every_tracing_event_is_one_write_of_one_line() {
        let calls = Calls::default();
        let sink = calls.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Whole(move || sink.clone()))
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..50u32 {
                let addr: std::net::SocketAddr = "127.0.0.1:3031".parse().unwrap();
                tracing::warn!(worker = i, %addr, status = ?Some(i), "worker exited; starting a new one");
                tracing::info!(backends = 3, "router started");
            }
        });
        let calls = calls.taken();
        assert_eq!(calls.len(), 100);
        for call in &calls {
            assert!(call.ends_with('\n'), "{call:?}");
            assert_eq!(call.matches('\n').count(), 1, "{call:?}");
        }
        assert!(calls[0].contains("worker exited; starting a new one worker=0 addr=127.0.0.1:3031"));
    }

    #[test]
    fn a_panic_report_reads_as_the_default_one() {
        let location = std::panic::Location::caller();
        let report = panic_report(
            "worker",
            Some(location),
            "boom 42",
            &std::backtrace::Backtrace::disabled(),
        );
        assert_eq!(
            report,
            format!(
                "thread 'worker' panicked at {location}:\nboom 42\n\
                 note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
            )
        );
        let backtrace = std::backtrace::Backtrace::force_capture();
        let report = panic_report("main", None, "x", &backtrace);
        assert!(report.starts_with("thread 'main' panicked:\nx\nstack backtrace:\n"));
    }

    #[test]
    fn panic_payloads_become_text() {
        let text: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(payload_text(&*text), "static");
        let owned: Box<dyn std::any::Any + Send> = Box::new(format!("owned {}", 1));
        assert_eq!(payload_text(&*owned), "owned 1");
        let other: Box<dyn std::any::Any + Send> = Box::new(7u8);
        assert_eq!(payload_text(&*other), "Box<dyn Any>");
    }
}
