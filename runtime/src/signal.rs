//! Shutdown signals for binaries.

use std::future::Future;

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM — what process managers
/// and `kill` send.
///
/// It listens from the moment it is called, not from its first poll: call
/// it before the program says it is serving, so that a signal sent as soon
/// as the program says so is not met by the default action (the process
/// killed, undrained). From then on those signals no longer kill the
/// process by themselves. Call it within a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            listen(signal(SignalKind::interrupt()), "Ctrl-C"),
            listen(signal(SignalKind::terminate()), "SIGTERM"),
        )
    };
    #[cfg(not(unix))]
    let (interrupt, terminate) = (
        async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await
            }
        },
        std::future::pending::<()>(),
    );
    async move {
        tokio::select! {
            () = interrupt => {}
            () = terminate => {}
        }
    }
}

/// Waits for a signal already registered, or forever when it could not be.
#[cfg(unix)]
async fn listen(signal: std::io::Result<tokio::signal::unix::Signal>, name: &'static str) {
    match signal {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for {name}");
            std::future::pending::<()>().await
        }
    }
}
