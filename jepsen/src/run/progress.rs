//! The live progress line on stderr (drawn only on a terminal): elapsed time,
//! operation counts and the fault in force, redrawn twice a second.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::recorder::Recorder;

/// Draws until `stop`, then clears the line.
pub fn spawn(
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    limit: Duration,
    members: usize,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut err = std::io::stderr();
        while !stop.load(Ordering::Relaxed) {
            let c = &recorder.counts;
            let fault = recorder
                .current_fault()
                .unwrap_or_else(|| "no fault".into());
            let mut line = format!(
                "[{:>4.0}/{:.0} s] {members} members | ok {} fail {} info {} | {fault}",
                start.elapsed().as_secs_f64(),
                limit.as_secs_f64(),
                c.ok.load(Ordering::Relaxed),
                c.fail.load(Ordering::Relaxed),
                c.info.load(Ordering::Relaxed),
            );
            line.truncate(line.floor_char_boundary(110));
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    })
}
