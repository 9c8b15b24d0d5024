//! Connections: pipes between real processes, CPython's connection behaviours, end of stream.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use serde::{Deserialize, Serialize};
use shmproc::connection::{Waitable, wait};
use shmproc::testing::{ForkPermit, assert_no_leaks, fork, watchdog};
use shmproc::{Error, Value, pipe, pipe_simplex};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Mixed {
    Int(i64),
    Text(String),
    List(Vec<Mixed>),
    Pair(Box<Mixed>, Option<f64>),
}

#[test]
fn send_recv_mixed_values_between_processes() {
    watchdog(LIMIT, "mixed", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            let values = vec![
                Mixed::Int(-7),
                Mixed::Text("ünïcode".into()),
                Mixed::List(vec![Mixed::Int(1), Mixed::Text(String::new())]),
                Mixed::Pair(Box::new(Mixed::Int(3)), Some(2.5)),
            ];
            let vals = values.clone();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                for v in &vals {
                    b.send(v).unwrap();
                }
                b.send(&(1u8, "tuple", [1.5f32; 3])).unwrap();
                let echo: Vec<u32> = b.recv().unwrap();
                b.send(&echo.iter().sum::<u32>()).unwrap();
                0
            });
            for v in &values {
                assert_eq!(&a.recv::<Mixed>().unwrap(), v);
            }
            let t: (u8, String, [f32; 3]) = a.recv().unwrap();
            assert_eq!(t, (1, "tuple".into(), [1.5; 3]));
            a.send(&vec![1u32, 2, 3]).unwrap();
            assert_eq!(a.recv::<u32>().unwrap(), 6);
            assert_eq!(child.wait(), Ok(0));
            assert!(matches!(a.recv::<u32>(), Err(Error::Disconnected)));
        })
    });
}

#[test]
fn bytes_round_trip_keeps_boundaries_including_empty() {
    watchdog(LIMIT, "bytes", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            let msgs: Vec<Vec<u8>> = vec![
                vec![],
                b"x".to_vec(),
                vec![],
                (0..=255).collect(),
                vec![7; 100_000],
                vec![],
            ];
            for m in &msgs {
                a.send_bytes(m).unwrap();
            }
            for m in &msgs {
                assert_eq!(&b.recv_bytes().unwrap(), m);
            }
            a.send_bytes_range(b"hello world", 6, Some(5)).unwrap();
            a.send_bytes_range(b"hello world", 6, None).unwrap();
            assert_eq!(b.recv_bytes().unwrap(), b"world");
            assert_eq!(b.recv_bytes().unwrap(), b"world");
            assert!(matches!(
                a.send_bytes_range(b"abc", 2, Some(5)),
                Err(Error::IndexOutOfBounds { .. })
            ));
            assert!(matches!(
                a.send_bytes_range(b"abc", 4, None),
                Err(Error::IndexOutOfBounds { .. })
            ));
        })
    });
}

#[test]
fn recv_bytes_into_at_offset_and_short_buffer_keeps_message() {
    watchdog(LIMIT, "into", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            a.send_bytes(b"something").unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(b.recv_bytes_into_at(&mut buf, 4).unwrap(), 9);
            assert_eq!(&buf[4..13], b"something");
            assert_eq!(&buf[..4], &[0; 4]);

            a.send_bytes(&[9u8; 40]).unwrap();
            let mut small = [0u8; 10];
            match b.recv_bytes_into(&mut small) {
                Err(Error::BufferTooSmall { needed }) => assert_eq!(needed, 40),
                other => panic!("expected BufferTooSmall, got {other:?}"),
            }
            match b.recv_bytes_into_at(&mut [0u8; 40], 5) {
                Err(Error::BufferTooSmall { needed }) => assert_eq!(needed, 45),
                other => panic!("expected BufferTooSmall, got {other:?}"),
            }
            // The message was kept.
            let mut big = [0u8; 64];
            assert_eq!(b.recv_bytes_into(&mut big).unwrap(), 40);
            assert_eq!(&big[..40], &[9u8; 40]);

            a.send_bytes(&[1u8; 100]).unwrap();
            a.send_bytes(b"next").unwrap();
            assert!(matches!(
                b.recv_bytes_max(10),
                Err(Error::MessageTooLarge {
                    size: 100,
                    limit: 10
                })
            ));
            assert_eq!(b.recv_bytes_max(10).unwrap(), b"next");
        })
    });
}

#[test]
fn poll_is_false_then_true() {
    watchdog(LIMIT, "poll", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            assert!(!b.poll(Some(Duration::ZERO)).unwrap());
            let t = Instant::now();
            assert!(!b.poll(Some(Duration::from_millis(30))).unwrap());
            assert!(t.elapsed() >= Duration::from_millis(30));
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                std::thread::sleep(Duration::from_millis(50));
                a.send(&5u8).unwrap();
                0
            });
            assert!(b.poll(None).unwrap());
            assert_eq!(b.recv::<u8>().unwrap(), 5);
            assert_eq!(child.wait(), Ok(0));
        })
    });
}

#[test]
fn sixteen_mib_message_crosses_processes() {
    watchdog(LIMIT, "16mib", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                let msg: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
                b.send_bytes(&msg).unwrap();
                let back = b.recv_bytes().unwrap();
                i32::from(back != msg)
            });
            let got = a.recv_bytes().unwrap();
            assert_eq!(got.len(), 16 << 20);
            assert!(got.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8));
            a.send_bytes(&got).unwrap();
            assert_eq!(child.wait(), Ok(0));
        })
    });
}

#[test]
fn end_of_stream_after_close() {
    watchdog(LIMIT, "eos", || {
        assert_no_leaks(|| {
            let (mut a, b) = pipe().unwrap();
            a.send(&1u32).unwrap();
            a.send(&2u32).unwrap();
            a.close();
            assert!(a.is_closed());
            assert!(matches!(a.send(&3u32), Err(Error::Closed)));
            assert_eq!(b.recv::<u32>().unwrap(), 1);
            assert!(b.poll(Some(Duration::ZERO)).unwrap());
            assert_eq!(b.recv::<u32>().unwrap(), 2);
            assert!(b.poll(Some(Duration::ZERO)).unwrap());
            assert!(matches!(b.recv::<u32>(), Err(Error::Disconnected)));
            assert!(matches!(b.send(&0u8), Err(Error::Disconnected)));

            // Dropping an end that was never passed on closes it too.
            let (c, d) = pipe().unwrap();
            drop(c);
            assert!(matches!(d.recv_bytes(), Err(Error::Disconnected)));
        })
    });
}

#[test]
fn end_of_stream_when_child_exits_or_closes() {
    watchdog(LIMIT, "eos_child", || {
        assert_no_leaks(|| {
            let (r, w) = pipe_simplex().unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                w.send(&"bye").unwrap();
                0
            });
            assert_eq!(r.recv::<String>().unwrap(), "bye");
            assert!(matches!(r.recv::<String>(), Err(Error::Disconnected)));
            assert_eq!(child.wait(), Ok(0));
        })
    });
}

#[test]
fn simplex_direction_errors() {
    watchdog(LIMIT, "simplex", || {
        assert_no_leaks(|| {
            let (r, w) = pipe_simplex().unwrap();
            assert!(r.readable() && !r.writable());
            assert!(w.writable() && !w.readable());
            assert!(matches!(
                r.send(&1u8),
                Err(Error::WrongDirection { needed: "writable" })
            ));
            assert!(matches!(
                w.recv::<u8>(),
                Err(Error::WrongDirection { needed: "readable" })
            ));
            assert!(matches!(
                w.poll(Some(Duration::ZERO)),
                Err(Error::WrongDirection { .. })
            ));
            w.send(&9u8).unwrap();
            assert_eq!(r.recv::<u8>().unwrap(), 9);
            let (a, b) = pipe().unwrap();
            assert!(a.readable() && a.writable() && b.readable() && b.writable());
        })
    });
}

/// Regression: a connection's token names its descriptors by position in the
/// transfer envelope that carries them, never by number. Decoded anywhere else (copied bytes,
/// a forged token) it is refused instead of duplicating whatever descriptor the number
/// happens to name in the receiver.
#[test]
fn connection_token_without_its_envelope_is_refused() {
    watchdog(LIMIT, "token", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            let bytes = shmproc::codec::to_bytes(&b).unwrap();
            let r: shmproc::Result<shmproc::Connection> = shmproc::codec::from_bytes(&bytes);
            assert!(
                matches!(r, Err(Error::DescriptorNotTransferred { index: None })),
                "{r:?}"
            );
            // A forged token that claims a descriptor position: nothing arrived, so nothing
            // is taken (the old format named a descriptor number; no number is ever used).
            #[derive(Serialize, Deserialize)]
            struct Token {
                obj: shmproc::ObjectToken,
                side: u8,
                readable: bool,
                writable: bool,
                rx_fd: Option<Option<u32>>,
                tx_fd: Option<Option<u32>>,
                alive_fd: Option<u32>,
                peer_fd: Option<u32>,
            }
            let mut forged: Token = shmproc::codec::from_bytes(&bytes).unwrap();
            forged.rx_fd = Some(Some(0));
            forged.tx_fd = Some(Some(1));
            let r: shmproc::Result<shmproc::Connection> =
                shmproc::codec::from_bytes(&shmproc::codec::to_bytes(&forged).unwrap());
            assert!(
                matches!(r, Err(Error::DescriptorNotTransferred { index: Some(0) })),
                "{r:?}"
            );
            // The ends still work.
            a.send(&1u8).unwrap();
            assert_eq!(b.recv::<u8>().unwrap(), 1);
        })
    });
}

/// A shared-memory pipe carries bytes only: a connection inside a message is refused at the
/// sender with an error that says how to pass it.
#[test]
fn connection_inside_a_message_over_a_pipe_is_refused_precisely() {
    watchdog(LIMIT, "no_channel", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            let (c, _d) = pipe().unwrap();
            let r = a.send(&c);
            assert!(
                matches!(
                    r,
                    Err(Error::NoDescriptorChannel {
                        channel: "a shared-memory pipe",
                        count: 4
                    })
                ),
                "{r:?}"
            );
            // Nothing was sent; the pipe is intact.
            a.send(&3u8).unwrap();
            assert_eq!(b.recv::<u8>().unwrap(), 3);
        })
    });
}

#[test]
fn wait_over_several_children_delivers_everything() {
    watchdog(LIMIT, "wait", || {
        assert_no_leaks(|| {
            const KIDS: usize = 4;
            const EACH: u32 = 200;
            let mut readers = Vec::new();
            let mut kids = Vec::new();
            for k in 0..KIDS {
                let (r, w) = pipe_simplex().unwrap();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                kids.push(fork(unsafe { ForkPermit::new() }, move || {
                    for i in 0..EACH {
                        w.send(&(k, i)).unwrap();
                        if i % 50 == 0 {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    0
                }));
                readers.push(r);
            }
            let mut next = [0u32; KIDS];
            let mut open: Vec<usize> = (0..KIDS).collect();
            while !open.is_empty() {
                let objs: Vec<Waitable<'_>> = open.iter().map(|&i| (&readers[i]).into()).collect();
                let ready = wait(&objs, None).unwrap();
                assert!(!ready.is_empty());
                let mut closed = Vec::new();
                for idx in ready {
                    let k = open[idx];
                    match readers[k].recv::<(usize, u32)>() {
                        Ok((kk, i)) => {
                            assert_eq!((kk, i), (k, next[k]));
                            next[k] += 1;
                        }
                        Err(Error::Disconnected) => closed.push(k),
                        Err(e) => panic!("{e}"),
                    }
                }
                open.retain(|k| !closed.contains(k));
            }
            assert_eq!(next, [EACH; KIDS]);
            for k in &mut kids {
                assert_eq!(k.wait(), Ok(0));
            }
        })
    });
}

#[test]
fn wait_times_out_empty_and_sees_raw_descriptors() {
    watchdog(LIMIT, "wait_timeout", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            let t = Instant::now();
            let ready = wait(&[(&a).into()], Some(Duration::from_millis(20))).unwrap();
            assert!(ready.is_empty());
            assert!(t.elapsed() >= Duration::from_millis(20));
            let (s1, mut s2) = std::os::unix::net::UnixStream::pair().unwrap();
            std::io::Write::write_all(&mut s2, b"x").unwrap();
            let ready = wait(&[(&a).into(), Waitable::fd(&s1)], None).unwrap();
            assert_eq!(ready, [1]);
            b.send(&()).unwrap();
            let ready = wait(&[(&a).into(), Waitable::fd(&s1)], None).unwrap();
            assert_eq!(ready, [0, 1]);
        })
    });
}

#[test]
fn kill_writer_mid_large_message_gives_earlier_messages_then_end_of_stream() {
    watchdog(LIMIT, "kill_writer", || {
        assert_no_leaks(|| {
            let (r, w) = pipe_simplex().unwrap();
            let started = Value::new(0u32).unwrap();
            let s2 = started.clone();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                for i in 0..3u32 {
                    w.send(&i).unwrap();
                }
                s2.set(1).unwrap();
                // Far larger than the ring: blocks mid-message until the reader drains.
                let big = vec![0xabu8; 64 << 20];
                w.send_bytes(&big).unwrap();
                s2.set(2).unwrap();
                std::thread::sleep(Duration::from_secs(600));
                0
            });
            while started.get().unwrap() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Let the writer fill the ring and block inside the large message.
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(child.kill(), Err(9));
            for i in 0..3u32 {
                assert_eq!(r.recv::<u32>().unwrap(), i);
            }
            assert!(matches!(r.recv_bytes(), Err(Error::Disconnected)));
            assert!(matches!(r.recv_bytes(), Err(Error::Disconnected)));
        })
    });
}

#[test]
fn kill_reader_makes_blocked_sender_fail() {
    watchdog(LIMIT, "kill_reader", || {
        assert_no_leaks(|| {
            let (r, w) = pipe_simplex().unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                let _ = r.recv::<u8>();
                std::thread::sleep(Duration::from_secs(600));
                0
            });
            w.send(&1u8).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(child.kill(), Err(9));
            let big = vec![0u8; 8 << 20];
            assert!(matches!(w.send_bytes(&big), Err(Error::Disconnected)));
        })
    });
}

#[test]
fn stress_many_messages_both_ways() {
    watchdog(LIMIT, "stress", || {
        assert_no_leaks(|| {
            const N: u64 = 200_000;
            let (a, b) = pipe().unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                let mut sum = 0u64;
                for _ in 0..N {
                    let (i, pad): (u64, Vec<u8>) = b.recv().unwrap();
                    assert_eq!(pad.len() as u64, i % 300);
                    sum += i;
                }
                b.send(&sum).unwrap();
                0
            });
            for i in 0..N {
                a.send(&(i, vec![1u8; (i % 300) as usize])).unwrap();
            }
            assert_eq!(a.recv::<u64>().unwrap(), N * (N - 1) / 2);
            assert_eq!(child.wait(), Ok(0));
        })
    });
}

// ------------------------------------------------------------------ sockets

use shmproc::connection::Address;
use shmproc::{Client, Listener};
use std::io::{Read, Write};

const KEY: &[u8] = b"secret key";

fn unique(tag: &str) -> String {
    format!("shmproc-test-{}-{tag}", std::process::id())
}

/// Serves `n` clients on `listener` in a forked child: echoes each message back, adding 1 to
/// `u64`s. Accept failures are reported as the message `"auth-error"` to the next good client.
fn serve(listener: Listener, attempts: usize) -> shmproc::testing::Child {
    // SAFETY: no other thread of this process holds a lock that the child takes.
    fork(unsafe { ForkPermit::new() }, move || {
        let mut failures = 0u32;
        for _ in 0..attempts {
            match listener.accept() {
                Ok(c) => {
                    c.send(&failures).unwrap();
                    while let Ok(v) = c.recv::<u64>() {
                        c.send(&(v + 1)).unwrap();
                    }
                }
                Err(Error::AuthFailed | Error::Timeout | Error::Disconnected) => failures += 1,
                Err(e) => panic!("accept: {e}"),
            }
        }
        0
    })
}

fn talk(c: &shmproc::Connection) -> u32 {
    let failures: u32 = c.recv().unwrap();
    c.send(&41u64).unwrap();
    assert_eq!(c.recv::<u64>().unwrap(), 42);
    failures
}

#[test]
fn listener_unix_path_round_trip_with_key() {
    watchdog(LIMIT, "unix_path", || {
        assert_no_leaks(|| {
            let path = std::env::temp_dir().join(unique("sock"));
            let l = Listener::bind(path.clone(), Some(KEY)).unwrap();
            let mut server = serve(l, 1);
            let c = Client::connect(path.clone(), Some(KEY)).unwrap();
            assert_eq!(talk(&c), 0);
            drop(c);
            assert_eq!(server.wait(), Ok(0));
            // The listener's copy in this process was dropped: the path is gone.
            assert!(!path.exists());
        })
    });
}

#[test]
fn listener_abstract_name_and_tcp() {
    watchdog(LIMIT, "abstract_tcp", || {
        assert_no_leaks(|| {
            let name = Address::Abstract(unique("abs").into_bytes());
            let l = Listener::bind(name.clone(), Some(KEY)).unwrap();
            let mut server = serve(l, 1);
            let c = Client::connect(name, Some(KEY)).unwrap();
            assert_eq!(talk(&c), 0);
            drop(c);
            assert_eq!(server.wait(), Ok(0));

            let l = Listener::bind(
                "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(),
                Some(KEY),
            )
            .unwrap();
            let addr = l.address().clone();
            let mut server = serve(l, 1);
            let c = Client::connect(addr, Some(KEY)).unwrap();
            assert_eq!(talk(&c), 0);
            // A 16 MiB message over TCP.
            let big = vec![3u8; 16 << 20];
            c.send_bytes(&big).unwrap();
            drop(c);
            assert_eq!(server.wait(), Ok(0));
        })
    });
}

#[test]
fn tcp_listener_without_key_is_refused_unless_allowed() {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    assert!(matches!(
        Listener::bind(any, None),
        Err(Error::Unauthenticated)
    ));
    let l = Listener::bind_unauthenticated(any).unwrap();
    let addr = l.address().clone();
    let mut server = serve(l, 1);
    let c = Client::connect(addr, None).unwrap();
    assert_eq!(talk(&c), 0);
    drop(c);
    assert_eq!(server.wait(), Ok(0));
}

#[test]
fn wrong_key_fails_on_both_sides() {
    watchdog(LIMIT, "wrong_key", || {
        assert_no_leaks(|| {
            let name = Address::Abstract(unique("wrong").into_bytes());
            let l = Listener::bind(name.clone(), Some(KEY)).unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut server = fork(unsafe { ForkPermit::new() }, move || match l.accept() {
                Err(Error::AuthFailed) => 0,
                other => {
                    eprintln!("server got {other:?}");
                    1
                }
            });
            assert!(matches!(
                Client::connect(name, Some(b"not the key")),
                Err(Error::AuthFailed)
            ));
            assert_eq!(server.wait(), Ok(0));
        })
    });
}

#[test]
fn listener_survives_wrong_key_http_and_random_bytes() {
    watchdog(LIMIT, "hostile", || {
        assert_no_leaks(|| {
            let path = std::env::temp_dir().join(unique("hostile"));
            let mut l = Listener::bind(path.clone(), Some(KEY)).unwrap();
            l.set_handshake_timeout(Duration::from_millis(500));
            let mut server = serve(l, 5);
            // 1: wrong key.
            assert!(matches!(
                Client::connect(path.clone(), Some(b"wrong")),
                Err(Error::AuthFailed)
            ));
            // 2: an HTTP request.
            let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
            // 3: 4 KiB of random bytes.
            let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let junk: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = s.write_all(&junk);
            let _ = s.read_to_end(&mut sink);
            // 4: a silent client, dropped after the handshake timeout.
            let silent = std::os::unix::net::UnixStream::connect(&path).unwrap();
            let mut s2 = silent.try_clone().unwrap();
            let _ = s2.read_to_end(&mut sink);
            drop(silent);
            // 5: a correct client is served, after four failures.
            let c = Client::connect(path.clone(), Some(KEY)).unwrap();
            assert_eq!(talk(&c), 4);
            drop(c);
            assert_eq!(server.wait(), Ok(0));
        })
    });
}

#[test]
fn socket_connection_api_matches_pipe() {
    watchdog(LIMIT, "socket_api", || {
        assert_no_leaks(|| {
            let name = Address::Abstract(unique("api").into_bytes());
            let l = Listener::bind(name.clone(), Some(KEY)).unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut server = fork(unsafe { ForkPermit::new() }, move || {
                let c = l.accept().unwrap();
                c.send_bytes(b"").unwrap();
                c.send_bytes(&[5u8; 40]).unwrap();
                let f = std::fs::File::open("/proc/self/stat").unwrap();
                c.send_fd(std::os::fd::AsFd::as_fd(&f)).unwrap();
                c.send(&"after fd").unwrap();
                let _ = c.recv_bytes();
                0
            });
            let c = Client::connect(name, Some(KEY)).unwrap();
            assert!(c.poll(Some(Duration::from_secs(30))).unwrap());
            assert_eq!(c.recv_bytes().unwrap(), b"");
            let mut small = [0u8; 8];
            assert!(matches!(
                c.recv_bytes_into(&mut small),
                Err(Error::BufferTooSmall { needed: 40 })
            ));
            assert!(c.poll(Some(Duration::ZERO)).unwrap());
            let ready = wait(&[(&c).into()], Some(Duration::ZERO)).unwrap();
            assert_eq!(ready, [0]);
            let mut buf = [0u8; 64];
            assert_eq!(c.recv_bytes_into_at(&mut buf, 4).unwrap(), 40);
            let fd = c.recv_fd().unwrap();
            let mut f = std::fs::File::from(fd);
            let mut stat = String::new();
            f.read_to_string(&mut stat).unwrap();
            assert!(stat.starts_with(&format!("{} ", server.pid())));
            drop(f);
            assert_eq!(c.recv::<String>().unwrap(), "after fd");
            assert!(shmproc::codec::to_bytes(&c).is_err());
            drop(c);
            assert_eq!(server.wait(), Ok(0));
        })
    });
}

/// A value with handles sent over a Unix socket connection carries the descriptors they need
/// (`SCM_RIGHTS`): a connection end arrives working, and an ordinary message after it is
/// unaffected.
#[test]
fn connection_inside_a_message_travels_over_a_unix_socket() {
    watchdog(LIMIT, "socket_envelope", || {
        assert_no_leaks(|| {
            let name = Address::Abstract(unique("envelope").into_bytes());
            let l = Listener::bind(name.clone(), Some(KEY)).unwrap();
            let (mine, theirs) = pipe().unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut server = fork(unsafe { ForkPermit::new() }, move || {
                let c = l.accept().unwrap();
                let (end, v): (shmproc::Connection, Value<u32>) = c.recv().unwrap();
                end.send(&(v.get().unwrap() + 1)).unwrap();
                let after: String = c.recv().unwrap();
                c.send(&after.len()).unwrap();
                0
            });
            let c = Client::connect(name, Some(KEY)).unwrap();
            let v = Value::new(41u32).unwrap();
            c.send(&(&theirs, &v)).unwrap();
            assert_eq!(mine.recv::<u32>().unwrap(), 42);
            c.send(&"plain").unwrap();
            assert_eq!(c.recv::<usize>().unwrap(), 5);
            drop(theirs);
            assert_eq!(server.wait(), Ok(0));
        })
    });
}

#[test]
fn oversized_frame_is_rejected_without_allocating() {
    watchdog(LIMIT, "oversized", || {
        assert_no_leaks(|| {
            let name = Address::Abstract(unique("big").into_bytes());
            let mut l = Listener::bind(name.clone(), None).unwrap();
            l.set_max_message(1024);
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut server = fork(unsafe { ForkPermit::new() }, move || {
                let c = l.accept().unwrap();
                match c.recv_bytes() {
                    Err(Error::MessageTooLarge { size, limit: 1024 }) if size == u64::MAX => 0,
                    other => {
                        eprintln!("{other:?}");
                        1
                    }
                }
            });
            let a = std::os::unix::net::SocketAddr::from_abstract_name(match &name {
                Address::Abstract(n) => n.clone(),
                _ => unreachable!(),
            })
            .unwrap();
            use std::os::linux::net::SocketAddrExt;
            let mut s = std::os::unix::net::UnixStream::connect_addr(&a).unwrap();
            s.write_all(&[0xff; 8]).unwrap();
            assert_eq!(server.wait(), Ok(0));
        })
    });
}

#[test]
fn fuzz_corpus_replays_without_panic() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/connection_frame");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        shmproc::connection::fuzz::frame_and_handshake(&data);
        n += 1;
    }
    assert!(n >= 10, "corpus at {} has {n} files", dir.display());
}

#[test]
fn stress_one_gib_message_crosses_processes() {
    watchdog(Duration::from_secs(200), "one_gib", || {
        assert_no_leaks(|| {
            const GIB: usize = 1 << 30;
            let (r, w) = pipe_simplex().unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                let mut msg = vec![0u8; GIB];
                for (i, chunk) in msg.chunks_mut(4096).enumerate() {
                    chunk[0] = i as u8;
                }
                w.send_bytes(&msg).unwrap();
                0
            });
            let got = r.recv_bytes().unwrap();
            assert_eq!(got.len(), GIB);
            assert!(got.chunks(4096).enumerate().all(|(i, c)| c[0] == i as u8));
            drop(got);
            assert_eq!(child.wait(), Ok(0));
            assert!(matches!(r.recv_bytes(), Err(Error::Disconnected)));
        })
    });
}

#[test]
fn silent_and_dripping_clients_do_not_lock_out_a_legitimate_one() {
    // `SHMPROC_FLOOD` raises the number of silent clients (the deep check floods past the
    // listener's handshake table).
    let silent = std::env::var("SHMPROC_FLOOD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    flood(silent, None);
}

/// Past its handshake table, a listener displaces its oldest handshakes, so the newcomer
/// still gets through.
#[test]
fn a_flood_past_the_handshake_table_displaces_the_oldest() {
    flood(200, Some(16));
}

/// `silent` clients that connect and say nothing and 5 that drip bytes, then a legitimate
/// client that must be served within 10 s.
fn flood(silent: usize, table: Option<usize>) {
    watchdog(LIMIT, "listener_flood", || {
        let mut l = Listener::bind(
            "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(),
            Some(KEY),
        )
        .unwrap();
        if let Some(n) = table {
            l.set_max_handshakes(n);
        }
        let table = table.unwrap_or(shmproc::connection::MAX_HANDSHAKES);
        let addr = l.address().clone();
        let Address::Tcp(sock) = addr.clone() else {
            unreachable!()
        };
        // The server takes whatever comes until one client authenticates, then serves it.
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut server = fork(unsafe { ForkPermit::new() }, move || {
            // The server must not outlive a test aborted by its watchdog.
            // SAFETY: `PR_SET_PDEATHSIG` only sets a flag of this process.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let mut failures = 0u32;
            loop {
                match l.accept() {
                    Ok(c) => {
                        c.send(&failures).unwrap();
                        while let Ok(v) = c.recv::<u64>() {
                            c.send(&(v + 1)).unwrap();
                        }
                        return 0;
                    }
                    Err(Error::AuthFailed | Error::Timeout | Error::Disconnected) => failures += 1,
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        // Clients that connect and say nothing.
        let silent: Vec<std::net::TcpStream> = (0..silent)
            .map(|_| std::net::TcpStream::connect(sock).unwrap())
            .collect();
        // 5 clients that drip a plausible frame prefix, one byte every 300 ms.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drippers: Vec<_> = (0..5)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(sock).unwrap();
                    for b in 32u64.to_le_bytes().iter().cycle() {
                        if stop.load(std::sync::atomic::Ordering::Relaxed)
                            || s.write_all(&[*b]).is_err()
                        {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(300));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // The legitimate client, with its own 10 s limit as the failure signal.
        let (tx, rx) = std::sync::mpsc::channel();
        let t0 = Instant::now();
        let client = std::thread::spawn(move || {
            let r = Client::connect(addr, Some(KEY));
            let _ = tx.send(t0.elapsed());
            r
        });
        let took = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the legitimate client was not served within 10 s");
        let c = client.join().unwrap().expect("legitimate client refused");
        eprintln!(
            "legitimate client authenticated after {took:?} behind {} silent and 5 dripping \
             clients (handshake table {table})",
            silent.len()
        );
        let failures: u32 = c.recv().unwrap();
        c.send(&41u64).unwrap();
        assert_eq!(c.recv::<u64>().unwrap(), 42);
        if silent.len() + 5 <= table {
            assert_eq!(failures, 0, "no handshake should have failed yet");
        } else {
            assert!(failures > 0, "the oldest handshakes were displaced");
        }
        drop(c);
        assert_eq!(server.wait(), Ok(0));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for d in drippers {
            d.join().unwrap();
        }
        drop(silent);
    });
}

// ------------------------------------------------------------------ ends whose holder died

fn read_until_end(rx: shmproc::Connection) -> std::process::ExitCode {
    match rx.recv::<u64>() {
        Err(Error::Disconnected) => std::process::ExitCode::SUCCESS,
        other => {
            eprintln!("reader got {other:?}");
            std::process::ExitCode::from(3)
        }
    }
}

fn write_later(tx: shmproc::Connection) -> std::process::ExitCode {
    std::thread::sleep(Duration::from_secs(30));
    let _ = tx.send(&1u64);
    std::process::ExitCode::SUCCESS
}

#[test]
fn reader_sees_end_of_stream_when_the_writer_is_killed_before_attaching() {
    watchdog(Duration::from_secs(120), "writer_killed_early", || {
        shmproc::ensure_forkserver().unwrap();
        assert_no_leaks(|| {
            for run in 0..10 {
                // Both start methods that pass ends by serialization.
                let method = if run % 2 == 0 {
                    shmproc::StartMethod::Spawn
                } else {
                    shmproc::StartMethod::ForkServer
                };
                let (rx, tx) = pipe_simplex().unwrap();
                let reader = shmproc::Process::new(read_until_end, rx)
                    .start_method(method)
                    .start()
                    .unwrap();
                let writer = shmproc::Process::new(write_later, tx)
                    .start_method(method)
                    .start()
                    .unwrap();
                writer.kill().unwrap();
                writer.join().unwrap();
                // The parent serialized both ends and never used them: dropping its copies
                // does not close them, so only the liveness of the copies tells the reader.
                let t0 = Instant::now();
                let ended = reader.join_timeout(Duration::from_secs(10)).unwrap();
                if ended.is_none() {
                    reader.kill().unwrap();
                    reader.join().unwrap();
                }
                assert_eq!(
                    ended,
                    Some(0),
                    "run {run}: the reader did not see end of stream"
                );
                eprintln!(
                    "run {run} ({method:?}): reader ended after {:?}",
                    t0.elapsed()
                );
            }
        })
    });
}

#[test]
fn two_readers_on_one_end_never_deliver_a_message_twice() {
    const N: u64 = 5000;
    watchdog(LIMIT, "two_readers", || {
        let (rx, tx) = pipe_simplex().unwrap();
        let reader = |rx: &shmproc::Connection, out: shmproc::Connection| {
            let mut got = Vec::new();
            loop {
                match rx.recv::<u64>() {
                    Ok(v) => got.push(v),
                    Err(Error::Disconnected) => break,
                    Err(e) => {
                        eprintln!("reader: {e}");
                        break;
                    }
                }
            }
            out.send(&got).unwrap();
            0
        };
        let (res0, out0) = pipe_simplex().unwrap();
        let (res1, out1) = pipe_simplex().unwrap();
        // Both children use the same inherited reading end: a misuse that must not duplicate.
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut c0 = fork(unsafe { ForkPermit::new() }, || reader(&rx, out0));
        // SAFETY: as above.
        let mut c1 = fork(unsafe { ForkPermit::new() }, || reader(&rx, out1));
        for v in 0..N {
            tx.send(&v).unwrap();
        }
        let mut tx = tx;
        tx.close();
        let mut all: Vec<u64> = res0.recv().unwrap();
        let other: Vec<u64> = res1.recv().unwrap();
        eprintln!("reader 0 got {}, reader 1 got {}", all.len(), other.len());
        all.extend(other);
        all.sort_unstable();
        assert_eq!(
            all.len() as u64,
            N,
            "messages delivered: {} for {N} sent",
            all.len()
        );
        assert!(
            all.iter().copied().eq(0..N),
            "a message was lost or duplicated"
        );
        assert_eq!(c0.wait(), Ok(0));
        assert_eq!(c1.wait(), Ok(0));
    });
}

fn send_squares(tx: shmproc::Sender<u64>) -> shmproc::Result<()> {
    for i in 0..100u64 {
        tx.send(&(i * i))?;
    }
    Ok(())
}

fn echo_negated((rx, tx): (shmproc::Receiver<i32>, shmproc::Sender<i32>)) -> shmproc::Result<()> {
    while let Some(v) = rx.recv_timeout(Duration::from_secs(30))? {
        tx.send(&-v)?;
        if v == 0 {
            break;
        }
    }
    Ok(())
}

/// Issue 18: typed pipe ends travel to a child in `(tx, rx)` order and carry one type.
#[test]
fn typed_pipe_ends_cross_processes() {
    watchdog(Duration::from_secs(60), "typed_pipe", || {
        assert_no_leaks(|| {
            let (tx, rx) = shmproc::typed_pipe::<u64>().unwrap();
            let child = shmproc::spawn(send_squares, tx).unwrap();
            let got: Vec<u64> = (0..100).map(|_| rx.recv().unwrap()).collect();
            child.join().unwrap().unwrap();
            assert_eq!(got, (0..100u64).map(|i| i * i).collect::<Vec<_>>());
            assert!(matches!(rx.recv(), Err(shmproc::Error::Disconnected)));
            assert_eq!(rx.try_recv().ok(), None);

            let (to_child, from_parent) = shmproc::typed_pipe::<i32>().unwrap();
            let (to_parent, from_child) = shmproc::typed_pipe::<i32>().unwrap();
            let child = shmproc::spawn(echo_negated, (from_parent, to_parent)).unwrap();
            for v in [5, -3, 0] {
                to_child.send(&v).unwrap();
                assert_eq!(
                    from_child.recv_timeout(Duration::from_secs(30)).unwrap(),
                    Some(-v)
                );
            }
            child.join().unwrap().unwrap();
        })
    });
}

/// A displacement storm: attackers keep connecting (and hanging up) while a legitimate
/// client authenticates; it must get through, on TCP and on a Unix socket, with the default
/// handshake table and a small one.
#[test]
fn a_legitimate_client_gets_through_a_connection_storm() {
    storm(false, None);
    storm(false, Some(64));
    storm(true, None);
    storm(true, Some(64));
    storm(true, Some(2));
    storm(false, Some(2));
}

fn storm(unix: bool, table: Option<usize>) {
    watchdog(LIMIT, "listener_storm", || {
        let addr = if unix {
            Address::Abstract(unique("storm").into_bytes())
        } else {
            Address::Tcp("127.0.0.1:0".parse().unwrap())
        };
        let mut l = Listener::bind(addr, Some(KEY)).unwrap();
        if let Some(n) = table {
            l.set_max_handshakes(n);
        }
        let addr = l.address().clone();
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut server = fork(unsafe { ForkPermit::new() }, move || {
            // SAFETY: `PR_SET_PDEATHSIG` only sets a flag of this process.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            loop {
                match l.accept() {
                    Ok(c) => {
                        // Attackers never write: only the legitimate client says anything.
                        if let Ok(v) = c.recv::<u64>() {
                            c.send(&(v + 1)).unwrap();
                            return 0;
                        }
                    }
                    Err(Error::AuthFailed | Error::Timeout | Error::Disconnected) => {}
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connects = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let attackers: Vec<_> = (0..2)
            .map(|_| {
                let (stop, connects, addr) = (stop.clone(), connects.clone(), addr.clone());
                std::thread::spawn(move || {
                    // At most 256 open at once per attacker: the oldest hangs up.
                    let mut open = std::collections::VecDeque::new();
                    let t0 = Instant::now();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && t0.elapsed() < Duration::from_secs(30)
                    {
                        let s: Box<dyn Send> = match &addr {
                            Address::Tcp(a) => match std::net::TcpStream::connect(a) {
                                Ok(s) => Box::new(s),
                                Err(_) => continue,
                            },
                            Address::Abstract(n) => {
                                use std::os::linux::net::SocketAddrExt;
                                let a =
                                    std::os::unix::net::SocketAddr::from_abstract_name(n).unwrap();
                                match std::os::unix::net::UnixStream::connect_addr(&a) {
                                    Ok(s) => Box::new(s),
                                    Err(_) => continue,
                                }
                            }
                            _ => unreachable!(),
                        };
                        connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        open.push_back(s);
                        if open.len() > 256 {
                            open.pop_front();
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let mut tries = 0u32;
        let c = loop {
            tries += 1;
            match Client::connect(addr.clone(), Some(KEY)) {
                Ok(c) => break Some(c),
                Err(_) if t0.elapsed() < Duration::from_secs(20) => {}
                Err(e) => {
                    eprintln!("last error: {e}");
                    break None;
                }
            }
        };
        let during = connects.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "{} table {table:?}: {tries} tries, {:?}, {during} attacker connections",
            if unix { "unix" } else { "tcp" },
            t0.elapsed()
        );
        let c = c.expect("the legitimate client never authenticated during the storm");
        c.send(&41u64).unwrap();
        assert_eq!(c.recv::<u64>().unwrap(), 42);
        // The server is gone with its listener: attackers blocked in connecting are refused.
        assert_eq!(server.wait(), Ok(0));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for a in attackers {
            a.join().unwrap();
        }
    });
}

/// A server out of descriptors (its limit below the handshake table, as a default limit of
/// 1,024 is below the default table) displaces its oldest handshake instead of failing every
/// `accept`: silent clients holding every descriptor cannot keep a legitimate client out,
/// and `accept` does not return the same error in a busy loop.
#[test]
fn silent_clients_holding_every_descriptor_are_displaced() {
    watchdog(LIMIT, "listener_emfile", || {
        let name = Address::Abstract(unique("emfile").into_bytes());
        let mut l = Listener::bind(name.clone(), Some(KEY)).unwrap();
        // Silent clients stay for the whole test unless displaced.
        l.set_handshake_timeout(Duration::from_secs(600));
        let addr = name.clone();
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut server = fork(unsafe { ForkPermit::new() }, move || {
            // SAFETY: `PR_SET_PDEATHSIG` only sets a flag of this process.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            // SAFETY: `lim` is a valid rlimit for the call's duration.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
            let mut errors = 0u32;
            loop {
                match l.accept() {
                    Ok(c) => {
                        if let Ok(v) = c.recv::<u64>() {
                            c.send(&(v + 1)).unwrap();
                            return 0;
                        }
                    }
                    Err(Error::AuthFailed | Error::Timeout | Error::Disconnected) => {}
                    Err(e) => {
                        errors += 1;
                        // Out of descriptors with nothing to displace is an error; a
                        // thousand in a row is the busy loop.
                        assert!(errors < 1000, "accept keeps failing: {e}");
                    }
                }
            }
        });
        let silent: Vec<_> = (0..100)
            .map(|_| {
                let Address::Abstract(n) = &addr else {
                    unreachable!()
                };
                use std::os::linux::net::SocketAddrExt;
                let a = std::os::unix::net::SocketAddr::from_abstract_name(n).unwrap();
                std::os::unix::net::UnixStream::connect_addr(&a).unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // Within the client's own handshake timeout (5 s), long before any silent client's.
        let c = Client::connect(addr, Some(KEY)).expect("the legitimate client was kept out");
        c.send(&41u64).unwrap();
        assert_eq!(c.recv::<u64>().unwrap(), 42);
        assert_eq!(server.wait(), Ok(0));
        drop(silent);
    });
}

#[test]
fn round_trips_with_spinning_off_sleep_and_wake_across_processes() {
    watchdog(LIMIT, "no_spin", || {
        assert_no_leaks(|| {
            let (mut a, b) = pipe().unwrap();
            a.set_spinning(false);
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                b.set_spinning(false);
                while let Ok(x) = b.recv::<u64>() {
                    b.send(&(x + 1)).unwrap();
                }
                0
            });
            for i in 0..2000u64 {
                a.send(&i).unwrap();
                assert_eq!(a.recv::<u64>().unwrap(), i + 1);
            }
            // A message of several records (larger than a chunk) through the blocking path.
            let (tx, rx) = pipe_simplex().map(|(r, t)| (t, r)).unwrap();
            tx.set_spinning(false);
            rx.set_spinning(false);
            let big = vec![7u8; 100_000];
            tx.send_bytes(&big).unwrap();
            assert_eq!(rx.recv_bytes().unwrap(), big);
            a.close();
            assert_eq!(child.wait(), Ok(0));
        })
    });
}

/// Issue 18: in debug builds a value received as another type than it was sent as is
/// `MessageTypeMismatch` naming both types (not garbage or a postcard error), the message is
/// consumed, and serde-alike types (`&str` sent, `String` received) still match.
#[test]
fn debug_type_tag_reports_a_value_received_as_another_type() {
    watchdog(LIMIT, "type_tag", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            a.send(&-1i32).unwrap();
            let got = b.recv::<u32>();
            if cfg!(debug_assertions) {
                match got {
                    Err(Error::MessageTypeMismatch { expected, sent }) => {
                        assert_eq!((expected, sent.as_str()), ("u32", "i32"));
                        let text = Error::MessageTypeMismatch { expected, sent }.to_string();
                        assert!(text.contains("`i32`") && text.contains("`u32`"), "{text}");
                    }
                    other => panic!("expected MessageTypeMismatch, got {other:?}"),
                }
            }
            a.send("hi").unwrap();
            assert_eq!(b.recv::<String>().unwrap(), "hi");
            a.send(&vec![Mixed::Int(1)]).unwrap();
            assert_eq!(b.recv::<Box<[Mixed]>>().unwrap()[..], [Mixed::Int(1)]);
            // A tagged message read from another process is checked there too.
            a.send(&(1u8, 2u8)).unwrap();
            // SAFETY: no other thread of this process holds a lock the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                match b.recv::<[u8; 2]>() {
                    Err(Error::MessageTypeMismatch { .. }) => 1,
                    Ok([1, 2]) => 2,
                    _ => 3,
                }
            });
            let want = if cfg!(debug_assertions) { 1 } else { 2 };
            assert_eq!(child.wait(), Ok(want));
        });
    });
}

/// Issue 18: the type tag never disturbs a peer of the other build: an untagged message (a
/// release sender) is received by a checking receiver, and a tagged one (a debug sender) reads
/// as exactly the value's bytes to a receiver that does not check.
#[test]
fn type_tag_interoperates_with_untagged_peers() {
    watchdog(LIMIT, "type_tag_interop", || {
        assert_no_leaks(|| {
            let (a, b) = pipe().unwrap();
            // As a release sender does: the value's bytes, no tag.
            a.send_bytes(&shmproc::codec::to_bytes(&7u64).unwrap())
                .unwrap();
            assert_eq!(b.recv::<u64>().unwrap(), 7);
            // As a debug sender does, read by bytes (what every build's reader does with the
            // tag record: skip it).
            let value = Mixed::Text("x".into());
            a.send(&value).unwrap();
            assert_eq!(
                b.recv_bytes().unwrap(),
                shmproc::codec::to_bytes(&value).unwrap()
            );
            // A tag is for one message only.
            a.send(&1u8).unwrap();
            assert_eq!(b.recv_bytes().unwrap(), [1]);
            a.send_bytes(&shmproc::codec::to_bytes(&5u16).unwrap())
                .unwrap();
            assert_eq!(b.recv::<u32>().unwrap(), 5);
        });
    });
}

/// Issue 18: the debug type tag also travels over socket connections (a tag frame before the
/// message frame, with or without descriptors), and byte-level reads skip it.
#[test]
fn debug_type_tag_over_a_socket_connection() {
    watchdog(LIMIT, "type_tag_socket", || {
        assert_no_leaks(|| {
            let name = Address::Abstract(unique("tag").into_bytes());
            let l = Listener::bind(name.clone(), Some(KEY)).unwrap();
            let server = std::thread::spawn(move || l.accept().unwrap());
            let c = Client::connect(name, Some(KEY)).unwrap();
            let s = server.join().unwrap();
            c.send(&-1i32).unwrap();
            let got = s.recv::<u32>();
            if cfg!(debug_assertions) {
                assert!(
                    matches!(&got, Err(Error::MessageTypeMismatch { expected: "u32", sent }) if sent == "i32"),
                    "{got:?}"
                );
            }
            // A value whose handle carries its segment's descriptor: tag frame, then the
            // frame with descriptors.
            let v = Value::new(5u64).unwrap();
            c.send(&v).unwrap();
            assert_eq!(s.recv::<Value<u64>>().unwrap().get().unwrap(), 5);
            c.send("text").unwrap();
            assert_eq!(
                s.recv_bytes().unwrap(),
                shmproc::codec::to_bytes("text").unwrap()
            );
            c.send_bytes(&shmproc::codec::to_bytes(&9u64).unwrap())
                .unwrap();
            assert_eq!(s.recv::<u64>().unwrap(), 9);
        });
    });
}
