//! A progress line for long compiles: when stderr is a terminal and compiling takes longer than
//! a second, one line (`compiling module.wasm… 1.3 s`) is updated in place until it is done, then
//! erased. Nothing is printed when stderr is not a terminal.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const DELAY: Duration = Duration::from_secs(1);
const INTERVAL: Duration = Duration::from_millis(100);

/// Shows progress while it lives.
pub struct Progress {
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Start showing `compiling <what>…` after a second, if stderr is a terminal.
    pub fn start(what: String) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { done: None, thread: None };
        }
        let (tx, rx) = mpsc::channel::<()>();
        let start = Instant::now();
        let thread = std::thread::Builder::new()
            .name("wasce-progress".into())
            .spawn(move || {
                if rx.recv_timeout(DELAY) != Err(RecvTimeoutError::Timeout) {
                    return;
                }
                let mut err = std::io::stderr();
                loop {
                    let _ = write!(err, "\r\x1b[Kcompiling {what}\u{2026} {:.1} s", start.elapsed().as_secs_f64());
                    let _ = err.flush();
                    if rx.recv_timeout(INTERVAL) != Err(RecvTimeoutError::Timeout) {
                        break;
                    }
                }
                let _ = write!(err, "\r\x1b[K");
                let _ = err.flush();
            })
            .ok();
        Progress { done: Some(tx), thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // Closing the channel stops the thread; wait so that the line is gone before anything
        // else is printed.
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
