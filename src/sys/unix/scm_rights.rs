//! `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)` and `sendmsg`/`recvmsg` with
//! `SCM_RIGHTS`: a private channel that carries descriptors.
//!
//! A socket pair has no name in any file system or namespace: only processes that inherit or
//! are sent one of its ends can reach it. Frames are a 4-byte little-endian length sent
//! together with the descriptors (so they arrive attached to the first byte), then the payload.
//! Received descriptors are close-on-exec (`MSG_CMSG_CLOEXEC`).
//!
//! [`send_with_fds`]/[`recv_with_fds`] attach descriptors to the first bytes of a connection's
//! frame (the transfer envelope of a value with handles).
//!
//! [`send_fd`]/[`recv_fd`] pass one descriptor over any Unix stream socket (a connection):
//! it travels with exactly one marker byte, so the receiver stays in step with the framed
//! messages around it.
//!
//! # References
//! - `socketpair(2)`, `unix(7)` (`SCM_RIGHTS`), `sendmsg(2)`, `recvmsg(2)`, `cmsg(3)`

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType, recvmsg, sendmsg, socketpair,
};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;

/// The most descriptors one frame carries.
pub(crate) const MAX_FDS: usize = 250;

/// Creates a connected pair of close-on-exec Unix stream sockets.
pub(crate) fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends one frame: `payload` and the descriptors `fds`.
pub(crate) fn send_frame(
    sock: BorrowedFd<'_>,
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::other("too many descriptors in one frame"));
    }
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::other("frame larger than 4 GiB"))?
        .to_le_bytes();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("control buffer too small"));
    }
    let mut sent = 0;
    while sent == 0 {
        match sendmsg(
            sock,
            &[IoSlice::new(&len)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => sent = n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut w = Stream(sock);
    w.write_all(len.get(sent..).unwrap_or_default())?;
    w.write_all(payload)
}

/// Receives one frame; `Ok(None)` on a clean end of stream. Payloads above `max_len` are an
/// error (nothing is allocated for them).
pub(crate) fn recv_frame(
    sock: BorrowedFd<'_>,
    max_len: usize,
) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut len = [0u8; 4];
    let (got, fds) = recv_with_fds(sock, &mut len)?;
    if got == 0 {
        return Ok(None);
    }
    let mut r = Stream(sock);
    r.read_exact(len.get_mut(got..).unwrap_or_default())?;
    let n = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
    if n > max_len {
        return Err(io::Error::other("frame larger than the cap"));
    }
    let mut payload = vec![0; n];
    r.read_exact(&mut payload)?;
    Ok(Some((payload, fds)))
}

struct Stream<'a>(BorrowedFd<'a>);

impl Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::io::read(self.0.as_fd(), buf)?)
    }
}

impl Write for Stream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(self.0.as_fd(), buf, SendFlags::NOSIGNAL)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends `data` over the Unix stream socket `sock` with the descriptors `fds` attached to its
/// first byte (one `sendmsg`); returns how many bytes were sent (at least 1 unless `data` is
/// empty). The caller sends the rest with ordinary writes.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::other("too many descriptors in one message"));
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("control buffer too small"));
    }
    loop {
        match sendmsg(
            sock,
            &[IoSlice::new(data)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(0) if !data.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives up to `buf.len()` bytes from the Unix stream socket `sock` (one `recvmsg`),
/// together with any descriptors attached to them (close-on-exec); `0` bytes means end of
/// stream. At most [`MAX_FDS`] descriptors are accepted per call; the kernel closes extras.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m.bytes,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    Ok((got, fds))
}

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
