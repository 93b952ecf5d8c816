//! Live counters that every client bumps, and the progress bar that shows
//! them on a terminal.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Running totals for the progress bar only; the report is built from the
/// clients' own [`super::stats::Stats`], so a relaxed count here is enough.
#[derive(Debug, Default)]
pub struct Live {
    pub full: AtomicU64,
    pub resumed: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(0.001);
        let full = self.full.load(Ordering::Relaxed);
        let resumed = self.resumed.load(Ordering::Relaxed);
        let requests = self.requests.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        format!(
            "{:.0} full/s  {:.0} resumed/s  {:.0} req/s  {errors} errors",
            full as f64 / secs,
            resumed as f64 / secs,
            requests as f64 / secs,
        )
    }
}

/// The bar, redrawn a few times a second until [`Progress::finish`].
pub struct Progress {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts drawing on stderr; call from inside the runtime.
    pub fn start(live: Arc<Live>, duration: Duration) -> Progress {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let bar = ProgressBar::with_draw_target(Some(millis), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{bar:30.cyan/blue} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let started = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let elapsed = started.elapsed();
                    bar.set_position(
                        u64::try_from(elapsed.as_millis())
                            .unwrap_or(u64::MAX)
                            .min(millis),
                    );
                    bar.set_message(live.line(elapsed));
                }
                bar.finish_and_clear();
            })
        };
        Progress { stop, task }
    }

    /// Stops and erases the bar, so the report starts on a clean line.
    pub async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        // The task only ends by seeing `stop`; a panic in it would only
        // mean no bar.
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_rates() {
        let live = Live::default();
        for _ in 0..10 {
            Live::add(&live.full);
            Live::add(&live.requests);
        }
        Live::add(&live.errors);
        assert_eq!(
            live.line(Duration::from_secs(2)),
            "5 full/s  0 resumed/s  5 req/s  1 errors"
        );
    }
}
