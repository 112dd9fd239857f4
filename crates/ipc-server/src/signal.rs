//! The signals that stop a server, as a stream of shutdown requests, for binaries that embed it.
//!
//! A daemon gets more than SIGINT and SIGTERM: SIGHUP when its terminal closes or a service
//! manager asks for a reload, SIGQUIT from a keyboard, SIGUSR1/SIGUSR2, SIGALRM and others from
//! scripts. Every one of those kills a process by default, which would leave its socket file
//! behind. [`ShutdownSignals`] catches them all and turns each into a graceful stop.
//!
//! Not caught: the signals of a fault in the process itself (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
//! SIGABRT, SIGSYS, SIGTRAP), after which running on is unsafe, and SIGKILL and SIGSTOP, which
//! cannot be. Real-time signals cannot be caught here; [`block_realtime_signals`] makes them
//! harmless instead. A socket left by SIGKILL is reclaimed by the next start.
//!
//! Create [`ShutdownSignals`] early: a signal is only caught once its handler is installed.

use std::io;

use futures::StreamExt;
use futures::stream::{SelectAll, Stream};
use nix::sys::signal::{SigSet, SigmaskHow, Signal as Sig};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals that stop the server gracefully, by name.
pub const STOP_SIGNALS: [(Sig, &str); 14] = [
    (Sig::SIGINT, "SIGINT"),
    (Sig::SIGTERM, "SIGTERM"),
    (Sig::SIGHUP, "SIGHUP"),
    (Sig::SIGQUIT, "SIGQUIT"),
    (Sig::SIGUSR1, "SIGUSR1"),
    (Sig::SIGUSR2, "SIGUSR2"),
    (Sig::SIGALRM, "SIGALRM"),
    (Sig::SIGVTALRM, "SIGVTALRM"),
    (Sig::SIGPROF, "SIGPROF"),
    (Sig::SIGXCPU, "SIGXCPU"),
    (Sig::SIGXFSZ, "SIGXFSZ"),
    (Sig::SIGIO, "SIGIO"),
    (Sig::SIGPWR, "SIGPWR"),
    (Sig::SIGSTKFLT, "SIGSTKFLT"),
];

/// Listens for every signal of [`STOP_SIGNALS`].
pub struct ShutdownSignals {
    signals: SelectAll<std::pin::Pin<Box<dyn Stream<Item = &'static str> + Send>>>,
}

impl std::fmt::Debug for ShutdownSignals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownSignals")
            .field("signals", &self.signals.len())
            .finish()
    }
}

impl ShutdownSignals {
    /// Installs the handlers. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// A handler could not be installed.
    pub fn new() -> io::Result<Self> {
        Self::except(&[])
    }

    /// Installs the handlers of every signal of [`STOP_SIGNALS`] but those of `skip`, which
    /// the program handles itself (`ipc-server` takes SIGUSR2 for a seamless restart). Must
    /// be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// A handler could not be installed.
    pub fn except(skip: &[Sig]) -> io::Result<Self> {
        let mut signals = SelectAll::new();
        for (sig, name) in STOP_SIGNALS
            .into_iter()
            .filter(|(sig, _)| !skip.contains(sig))
        {
            let stream = signal_stream(signal(SignalKind::from_raw(sig as i32))?, name);
            signals.push(stream);
        }
        Ok(Self { signals })
    }

    /// Waits for the next stop signal and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        match self.signals.next().await {
            Some(name) => name,
            // Signal streams never end while the runtime runs.
            None => std::future::pending().await,
        }
    }
}

fn signal_stream(
    mut sig: Signal,
    name: &'static str,
) -> std::pin::Pin<Box<dyn Stream<Item = &'static str> + Send>> {
    Box::pin(futures::stream::poll_fn(move |cx| {
        sig.poll_recv(cx).map(|got| got.map(|()| name))
    }))
}

/// Blocks the real-time signals (SIGRTMIN to SIGRTMAX) in the calling thread and the threads it
/// starts afterwards: sent with `kill`, they then stay pending and do nothing, instead of killing
/// the process by default. Call it first thing in `main`, before any thread starts.
///
/// # Errors
///
/// The signal mask could not be changed.
pub fn block_realtime_signals() -> io::Result<()> {
    // Every signal, less the standard ones: what remains is the real-time range. (The C
    // library keeps its own internal signals out of any mask.)
    let mut set = SigSet::all();
    for sig in Sig::iterator() {
        set.remove(sig);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(())
}
