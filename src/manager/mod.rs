//! The manager: objects held in one process and used from others through proxies.
//!
//! Custom types take part through `#[shmproc::managed]` on an inherent `impl` block, which
//! implements [`Managed`] for the type and generates its [`ManagedProxy`]; see
//! [`managed`](crate::managed) for what is accepted. Proxies call their object through a
//! [`RemoteObject`].

mod loopback;
mod managed;

pub use loopback::RemoteObject;
pub use managed::{DispatchError, Managed, ManagedProxy};
