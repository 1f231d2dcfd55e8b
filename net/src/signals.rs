//! SIGTERM / SIGINT handling: a dedicated thread waits for either and runs a
//! callback (which sets the node's stop flag). A second signal exits at once.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Runs `f` on the first SIGTERM/SIGINT; exits with 130 on the second.
pub fn on_terminate(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut f = Some(f);
            for sig in signals.forever() {
                match f.take() {
                    Some(f) => {
                        tracing::info!(signal = sig, "stop requested; draining");
                        f();
                    }
                    None => {
                        tracing::warn!(signal = sig, "second signal; exiting now");
                        std::process::exit(130);
                    }
                }
            }
        })?;
    Ok(())
}
