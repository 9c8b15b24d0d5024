//! `sendmsg`/`recvmsg` with `SCM_RIGHTS`: passing a descriptor over a Unix socket.
//!
//! One descriptor travels with exactly one data byte (`b'F'`), so the receiver reads exactly
//! that byte and stays in step with the framed messages around it. Received descriptors are
//! close-on-exec (`MSG_CMSG_CLOEXEC`).
//!
//! # References
//! - `unix(7)` (`SCM_RIGHTS`), `sendmsg(2)`, `recvmsg(2)`, `cmsg(3)`

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;

const MARK: u8 = b'F';

/// Sends `fd` over the Unix stream socket `sock`, with one marker byte.
pub(crate) fn send_fd(sock: impl AsFd, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("control buffer too small"));
    }
    loop {
        match sendmsg(
            &sock,
            &[IoSlice::new(&[MARK])],
            &mut anc,
            SendFlags::NOSIGNAL,
        ) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one descriptor sent by [`send_fd`] from `sock`.
pub(crate) fn recv_fd(sock: impl AsFd) -> io::Result<OwnedFd> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let got = loop {
        match recvmsg(
            &sock,
            &mut [IoSliceMut::new(&mut byte)],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(r) => break r.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if got == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut found = None;
    for msg in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                // Keep the first; any extra descriptors are closed by dropping them.
                if found.is_none() {
                    found = Some(fd);
                }
            }
        }
    }
    match (byte[0], found) {
        (MARK, Some(fd)) => Ok(fd),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "expected a descriptor message",
        )),
    }
}
