//! Awaiting a message from a child process inside a tokio runtime: the receiving end's
//! readiness descriptor (`Receiver::readiness`) goes into `tokio::io::unix::AsyncFd`; then
//! the same for a `Queue` (`Queue::readiness`), which a second child puts on.
//!
//! Prints `received: hello from the child` and `got from the queue: 42`.

#![allow(clippy::print_stdout)]

use serde::de::DeserializeOwned;
use shmproc::{Queue, Receiver};
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

/// The second child: waits a little, then puts one value on the queue.
fn queue_child(q: Queue<u32>) -> shmproc::Result<()> {
    std::thread::sleep(Duration::from_millis(100));
    q.put(&42)
}

/// Gets one value from a queue without blocking the runtime's thread: try, and when the
/// queue is empty, await its readiness descriptor.
async fn get_async<T: serde::Serialize + DeserializeOwned>(q: &Queue<T>) -> Result<T, BoxError> {
    let readiness = q.readiness()?;
    // SAFETY: `QueueReadiness` owns its eventfd, which stays open and the same for as long as
    // it (and so the `AsyncFd` that owns it) lives; its `as_raw_fd` always returns it.
    let ready = unsafe { AsyncFd::register_with_interest(readiness, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    loop {
        // Checked before every wait: a value put after `clear` always signals.
        match q.try_get() {
            Ok(v) => return Ok(v),
            Err(shmproc::Error::Empty) => {}
            Err(e) => return Err(e.into()),
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

    let queue = Queue::<u32>::new()?;
    let putter = shmproc::spawn(queue_child, queue.clone())?;
    let value = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), get_async(&queue)).await
    })??;
    println!("got from the queue: {value}");
    putter.join()??;
    Ok(())
}
