//! Awaiting a message from a child process inside a tokio runtime: the receiving end's
//! readiness descriptor (`Receiver::readiness`) goes into `tokio::io::unix::AsyncFd`.
//!
//! Prints `received: hello from the child`.

#![allow(clippy::print_stdout)]

use serde::de::DeserializeOwned;
use shmproc::Receiver;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The child: waits a little (so the parent really awaits), then sends one message.
fn child(tx: shmproc::Sender<String>) -> shmproc::Result<()> {
    std::thread::sleep(Duration::from_millis(100));
    tx.send(&"hello from the child".to_owned())
}

/// Receives one value without blocking the runtime's thread: try, and when nothing is there,
/// await the readiness descriptor.
async fn recv_async<T: DeserializeOwned>(rx: &Receiver<T>) -> Result<T, BoxError> {
    let readiness = rx.readiness()?;
    // SAFETY: `Readiness` borrows the receiving end's eventfd, which stays open and the same
    // for as long as `readiness` (and so the `AsyncFd` that owns it) lives; its `as_raw_fd`
    // always returns that descriptor.
    let ready = unsafe { AsyncFd::register_with_interest(readiness, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    loop {
        // Checked before every wait: a message sent after `readiness()` always signals.
        if let Some(v) = rx.try_recv()? {
            return Ok(v);
        }
        let mut guard = ready.readable().await?;
        guard.get_inner().clear();
        guard.clear_ready();
    }
}

fn main() -> Result<(), BoxError> {
    shmproc::init();
    let (tx, rx) = shmproc::typed_pipe::<String>()?;
    let producer = shmproc::spawn(child, tx)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let message = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), recv_async(&rx)).await
    })??;
    println!("received: {message}");
    producer.join()??;
    Ok(())
}
