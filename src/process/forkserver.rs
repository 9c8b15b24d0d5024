//! The `ForkServer` start method: a single-threaded server that forks children on request.
//!
//! The server is a `Spawn` child of the first process that needs it (a daemon: it dies with
//! that process). The two talk over a socket pair whose other end only the server inherited:
//! nothing is named in the file system or the abstract namespace, so no other user (nor any
//! unrelated process of ours) can reach it.
//!
//! Protocol, one request at a time (a mutex on the client side pairs requests with replies):
//! - request: a frame whose payload is the child's encoded start-up message and whose
//!   descriptors are the child's status pipe (write end) followed by the descriptors the
//!   message's indices refer to (result pipe, segments);
//! - reply: a frame of 4 bytes, the child's pid, or minus an errno if `fork` failed.
//!
//! The server is the children's parent, so it reaps them: each child's exit code goes to its
//! status pipe as 4 bytes, then the pipe closes; the client's end of that pipe is the child's
//! sentinel. When the client's end of the socket closes (the client exited), the server exits;
//! its daemon children die with it (`PR_SET_PDEATHSIG`).
//!
//! # Safety
//! The server forks from its single thread (it never starts another), so each child may run
//! ordinary code after `fork`.

#![allow(unsafe_code)]

use super::init::{Boot, run_child, take_inherited};
use super::{Launch, Sentinel, Started};
use crate::codec;
use crate::error::{Error, Result};
use crate::sys;
use crate::transfer::Envelope;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

/// The client side: the socket to the server, and the server's own process handle.
struct Server {
    owner_pid: u32,
    sock: OwnedFd,
    process: super::Process,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// Starts the forkserver of this process if it is not running yet.
///
/// The server is otherwise started by the first `ForkServer` start. Starting it early (while
/// the process is small, before other work) keeps that first start fast, and lets leak
/// accounting see the server's socket and process before a measured region.
///
/// # Errors
/// As for starting a process with [`StartMethod::Spawn`](crate::StartMethod::Spawn).
pub fn ensure_forkserver() -> Result<()> {
    let mut guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    connect(&mut guard).map(|_| ())
}

/// Forgets the parent's server in a `Fork` child: requests from two processes on one socket
/// would interleave. The child starts its own server if it needs one.
pub(super) fn forget_after_fork() {
    let old = SERVER.lock().unwrap_or_else(PoisonError::into_inner).take();
    drop(old);
}

fn connect(slot: &mut Option<Server>) -> Result<&Server> {
    let me = sys::current_pid();
    let alive = slot
        .as_ref()
        .is_some_and(|s| s.owner_pid == me && s.process.is_alive());
    if !alive {
        *slot = None;
        let (ours, theirs) = sys::socket_pair().map_err(|e| Error::io("socketpair", e))?;
        let builder = super::Process::new(serve, 0usize)
            .name("ForkServer")
            .daemon(true)
            .start_method(super::StartMethod::Spawn);
        let process = start_server(builder, theirs.as_fd())?;
        *slot = Some(Server {
            owner_pid: me,
            sock: ours,
            process,
        });
    }
    slot.as_ref()
        .ok_or_else(|| Error::io("forkserver", std::io::Error::other("not running")))
}

fn start_server(b: super::ProcessBuilder<usize>, sock: BorrowedFd<'_>) -> Result<super::Process> {
    // The server is not one of the caller's children as far as `active_children` goes: it is
    // started through the spawn method directly and not registered.
    let exe = super::exe_identity()?;
    let default = crate::runtime::default_segment()?;
    let me = super::current_process();
    let (targets, main) = super::single_target(b.target)?;
    let boot = Boot {
        exe: Boot::exe_of(exe),
        targets,
        main,
        args: codec::to_bytes(&b.args)?,
        segments: Vec::new(),
        default_segment: Some(0),
        result: None,
        extra: Vec::new(),
        handle_fds: Vec::new(),
        name: b.name.unwrap_or_default(),
        daemon: true,
        parent: (me.pid, me.name),
    };
    let launch = Launch {
        boot,
        envelope: Envelope {
            bytes: Vec::new(),
            segments: vec![default],
            fds: Vec::new(),
        },
        result: None,
    };
    let started = super::spawn::start(launch, &[sock])?;
    Ok(super::Process {
        state: std::sync::Arc::new(super::ChildState {
            pid: started.pid,
            name: "ForkServer".to_owned(),
            daemon: true,
            sentinel: started.sentinel,
            exit: Mutex::new(None),
            args: Mutex::new(None),
            leftovers: Mutex::new(None),
        }),
    })
}

/// Asks the server to fork a child for `launch`, handing it `extra` too.
pub(super) fn start(mut launch: Launch, extra: &[BorrowedFd<'_>]) -> Result<Started> {
    let (status_r, status_w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
    let mut fds: Vec<BorrowedFd<'_>> = vec![status_w.as_fd()];
    // Indices in the start-up message count from the descriptor after the status pipe.
    if let Some(r) = &launch.result {
        launch.boot.result = Some(fds.len() - 1);
        fds.push(r.as_fd());
    }
    for s in &launch.envelope.segments {
        launch.boot.segments.push(fds.len() - 1);
        fds.push(s.as_fd());
    }
    for fd in &launch.envelope.fds {
        launch.boot.handle_fds.push(fds.len() - 1);
        fds.push(fd.as_fd());
    }
    for fd in extra {
        launch.boot.extra.push(fds.len() - 1);
        fds.push(*fd);
    }
    let bytes = codec::to_bytes(&launch.boot)?;
    let mut guard = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    let server = connect(&mut guard)?;
    let io = |e| Error::io("forkserver request", e);
    sys::send_frame(server.sock.as_fd(), &bytes, &fds).map_err(io)?;
    let reply = sys::recv_frame(server.sock.as_fd(), 4)
        .map_err(io)?
        .ok_or_else(|| io(std::io::Error::other("forkserver closed the connection")))?;
    drop(guard);
    drop(fds);
    drop(status_w);
    let raw: [u8; 4] = reply
        .0
        .as_slice()
        .try_into()
        .map_err(|_| io(std::io::Error::other("malformed forkserver reply")))?;
    let pid = i32::from_le_bytes(raw);
    if pid <= 0 {
        return Err(Error::io("fork", std::io::Error::from_raw_os_error(-pid)));
    }
    Ok(Started {
        pid,
        sentinel: Sentinel::Status(status_r),
        leftovers: None,
    })
}

/// A child the server forked and has not reaped yet.
struct Kid {
    pid: i32,
    pidfd: OwnedFd,
    status: File,
}

/// The server's main loop (the target of the server process).
fn serve(sock_index: usize) {
    let Some(sock) = take_inherited(sock_index) else {
        return;
    };
    let mut sock = Some(sock);
    let me = i32::try_from(sys::current_pid()).unwrap_or(0);
    let mut kids: Vec<Kid> = Vec::new();
    loop {
        let Some(s) = sock.as_ref() else {
            return;
        };
        let ready = {
            let mut fds: Vec<BorrowedFd<'_>> = vec![s.as_fd()];
            fds.extend(kids.iter().map(|k| k.pidfd.as_fd()));
            match sys::wait_any_readable(&fds) {
                Ok(r) => r,
                Err(_) => return,
            }
        };
        // Reap first (indices shift when kids are removed, so go from the back).
        for &i in ready.iter().rev() {
            if i == 0 {
                continue;
            }
            let k = kids.swap_remove(i - 1);
            reap(k);
        }
        if ready.first() == Some(&0) {
            match sys::recv_frame(s.as_fd(), crate::codec::MAX_MESSAGE) {
                Ok(Some((payload, fds))) => {
                    let reply = fork_child(&payload, fds, me, &mut sock, &mut kids)
                        .unwrap_or_else(|errno| -errno);
                    let Some(s) = sock.as_ref() else {
                        return;
                    };
                    if sys::send_frame(s.as_fd(), &reply.to_le_bytes(), &[]).is_err() {
                        return;
                    }
                }
                // The client is gone: so is our reason to exist.
                Ok(None) | Err(_) => return,
            }
        }
    }
}

fn reap(mut k: Kid) {
    let code = match sys::fork::wait_pid(k.pid, false) {
        Ok(Some(sys::fork::ExitStatus::Exited(c))) => c,
        Ok(Some(sys::fork::ExitStatus::Signaled(s))) => -s,
        _ => -sys::fork::SIGKILL,
    };
    let _ = k.status.write_all(&code.to_le_bytes());
}

/// Forks one child; returns its pid, or an errno.
fn fork_child(
    payload: &[u8],
    mut fds: Vec<OwnedFd>,
    me: i32,
    sock: &mut Option<OwnedFd>,
    kids: &mut Vec<Kid>,
) -> std::result::Result<i32, i32> {
    const EINVAL: i32 = 22;
    if fds.is_empty() {
        return Err(EINVAL);
    }
    let status = File::from(fds.remove(0));
    let mut boot: Boot = codec::from_bytes(payload).map_err(|_| EINVAL)?;
    // SAFETY: the server process has a single thread (it never starts one), so the child
    // may run any code after the fork.
    let forked = unsafe { sys::fork::fork() };
    match forked {
        Ok(sys::fork::Forked::Child) => {
            // Close what belongs to the server: its socket and its other children's pidfds and
            // status pipes.
            drop(sock.take());
            drop(std::mem::take(kids));
            drop(status);
            let code = run_child(&mut boot, fds, me, true);
            super::init::exit(code)
        }
        Ok(sys::fork::Forked::Parent(pid)) => {
            drop(fds);
            let pidfd = sys::pidfd_open(pid).map_err(|e| e.raw_os_error().unwrap_or(EINVAL))?;
            kids.push(Kid { pid, pidfd, status });
            Ok(pid)
        }
        Err(e) => Err(e.raw_os_error().unwrap_or(EINVAL)),
    }
}
