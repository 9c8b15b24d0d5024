//! A remote manager: a server on TCP and a client that may run on another host (the
//! `processing` guide's "using a remote manager", with a queue the server publishes).
//!
//! ```text
//! manager_remote                  # a server on 127.0.0.1 and a client process, on loopback
//! manager_remote serve ADDR       # a server on ADDR (for example 0.0.0.0:50000)
//! manager_remote client ADDR      # a client of the server at ADDR
//! ```
//!
//! Both sides need the same key: `SHMPROC_EXAMPLE_KEY` in the environment (this example's
//! built-in key otherwise: choose your own for anything but a demonstration). The server
//! publishes a queue in its shared namespace; each client puts three greetings on it and the
//! server prints them.
//!
//! Prints (without arguments):
//! ```text
//! hello 0 from a remote client
//! hello 1 from a remote client
//! hello 2 from a remote client
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use shmproc::manager::QueueProxy;
use shmproc::{Manager, Process};
use std::net::SocketAddr;

fn key() -> Vec<u8> {
    std::env::var("SHMPROC_EXAMPLE_KEY")
        .unwrap_or_else(|_| "shmproc example key".into())
        .into_bytes()
}

/// Starts the server on `addr` and publishes the queue clients put greetings on.
fn serve(addr: SocketAddr) -> shmproc::Result<(Manager, QueueProxy<String>)> {
    let m = Manager::serve(addr, &key())?;
    let q = m.queue::<String>()?;
    m.shared()?.set("greetings", &q)?;
    Ok((m, q))
}

/// A client: connects, finds the queue by name, puts three greetings.
fn client(addr: SocketAddr) -> shmproc::Result<()> {
    let m = Manager::connect(addr, &key())?;
    let q: QueueProxy<String> = m.shared()?.get("greetings")?.ok_or(shmproc::Error::Empty)?;
    for i in 0..3 {
        q.put(&format!("hello {i} from a remote client"))?;
    }
    Ok(())
}

fn client_process(addr: String) -> shmproc::Result<()> {
    let addr = addr.parse().map_err(|_| shmproc::Error::Disconnected)?;
    client(addr)
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |a: &String| -> SocketAddr {
        a.parse().unwrap_or_else(|_| {
            eprintln!("not an address: {a}");
            std::process::exit(2)
        })
    };
    match args.as_slice() {
        [] => {
            let (m, q) = serve(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let shmproc::connection::Address::Tcp(addr) = m.address() else {
                unreachable!("a TCP server has a TCP address")
            };
            let p = Process::new(client_process, addr.to_string()).start()?;
            for _ in 0..3 {
                println!("{}", q.get()?);
            }
            p.join()?;
            m.shutdown()
        }
        [cmd, addr] if cmd == "serve" => {
            let (m, q) = serve(parse(addr))?;
            eprintln!("serving on {:?}", m.address());
            loop {
                println!("{}", q.get()?);
            }
        }
        [cmd, addr] if cmd == "client" => client(parse(addr)),
        _ => {
            eprintln!("usage: manager_remote [serve ADDR | client ADDR]");
            std::process::exit(2)
        }
    }
}
