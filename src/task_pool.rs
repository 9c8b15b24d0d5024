//! [`TaskPool`]: the surface the local [`Pool`] and the pool on MPI ranks
//! (`mpi_pool::MpiPool`, cargo feature `mpi`) share, so code can take either.

use crate::error::Result;
use crate::pool::Pool;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The iterator [`TaskPool::imap`] returns: one `Result` per input item.
pub type TaskIter<'a, R> = Box<dyn Iterator<Item = Result<R>> + 'a>;

/// What a pool of workers does, whatever the workers are: local processes ([`Pool`]) or the
/// ranks of an MPI job (`mpi_pool::MpiPool`).
///
/// Functions are `fn` items, as everywhere in shmproc. The MPI pool also needs each function
/// registered when it is built; the local pool needs nothing.
///
/// ```no_run
/// use shmproc::{Pool, TaskPool};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn total<P: TaskPool>(pool: &P) -> shmproc::Result<u64> {
///     Ok(pool.map(square, 0..1000u64)?.into_iter().sum())
/// }
///
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     println!("{}", total(&Pool::new(2)?)?);
///     Ok(())
/// }
/// ```
pub trait TaskPool {
    /// Returns the number of workers.
    fn processes(&self) -> usize;

    /// Accepts no new tasks; those submitted still run.
    fn close(&self);

    /// Closes the pool, waits for every submitted task, and stops the workers.
    ///
    /// # Errors
    /// As the pool's own `join`.
    fn join(&self) -> Result<()>;

    /// Runs `f(args)` on a worker and returns its result.
    ///
    /// # Errors
    /// The task's error, as the pool reports it.
    fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Applies `f` to every item, with the pool's default chunk size; results in input order.
    ///
    /// # Errors
    /// The error of the first item (in input order) that failed.
    fn map<A, R, I>(&self, f: fn(A) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>;

    /// [`map`](TaskPool::map) with `chunksize` items per task.
    ///
    /// # Errors
    /// As for [`map`](TaskPool::map).
    fn map_chunked<A, R, I>(&self, f: fn(A) -> R, input: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>;

    /// Applies `f` to every pair; results in input order.
    ///
    /// # Errors
    /// As for [`map`](TaskPool::map).
    fn starmap<A, B, R, I>(&self, f: fn(A, B) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>;

    /// A lazy `map` yielding results in input order, one task per item.
    ///
    /// # Errors
    /// What fails before the first task is sent; each item's own error is yielded in its
    /// place.
    fn imap<'a, A, R, I>(&'a self, f: fn(A) -> R, input: I) -> Result<TaskIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a;

    /// A lazy `map` yielding results in completion order, `chunksize` items per task.
    ///
    /// # Errors
    /// As for [`imap`](TaskPool::imap).
    fn imap_unordered<'a, A, R, I>(
        &'a self,
        f: fn(A) -> R,
        input: I,
        chunksize: usize,
    ) -> Result<TaskIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a;
}

impl TaskPool for Pool {
    fn processes(&self) -> usize {
        Pool::processes(self)
    }

    fn close(&self) {
        Pool::close(self);
    }

    fn join(&self) -> Result<()> {
        Pool::join(self)
    }

    fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::apply(self, f, args)
    }

    fn map<A, R, I>(&self, f: fn(A) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        Pool::map(self, f, input)
    }

    fn map_chunked<A, R, I>(&self, f: fn(A) -> R, input: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        Pool::map_chunked(self, f, input, chunksize)
    }

    fn starmap<A, B, R, I>(&self, f: fn(A, B) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        Pool::starmap(self, f, input)
    }

    fn imap<'a, A, R, I>(&'a self, f: fn(A) -> R, input: I) -> Result<TaskIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        Ok(Box::new(Pool::imap(self, f, input)?))
    }

    fn imap_unordered<'a, A, R, I>(
        &'a self,
        f: fn(A) -> R,
        input: I,
        chunksize: usize,
    ) -> Result<TaskIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        Ok(Box::new(Pool::imap_unordered(self, f, input, chunksize)?))
    }
}

#[cfg(feature = "mpi")]
impl TaskPool for crate::mpi_pool::MpiPool {
    fn processes(&self) -> usize {
        crate::mpi_pool::MpiPool::processes(self)
    }

    fn close(&self) {
        crate::mpi_pool::MpiPool::close(self);
    }

    fn join(&self) -> Result<()> {
        crate::mpi_pool::MpiPool::join(self)
    }

    fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        crate::mpi_pool::MpiPool::apply(self, f, args)
    }

    fn map<A, R, I>(&self, f: fn(A) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        crate::mpi_pool::MpiPool::map(self, f, input)
    }

    fn map_chunked<A, R, I>(&self, f: fn(A) -> R, input: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        crate::mpi_pool::MpiPool::map_chunked(self, f, input, chunksize)
    }

    fn starmap<A, B, R, I>(&self, f: fn(A, B) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        crate::mpi_pool::MpiPool::starmap(self, f, input)
    }

    fn imap<'a, A, R, I>(&'a self, f: fn(A) -> R, input: I) -> Result<TaskIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        Ok(Box::new(crate::mpi_pool::MpiPool::imap(self, f, input)?))
    }

    fn imap_unordered<'a, A, R, I>(
        &'a self,
        f: fn(A) -> R,
        input: I,
        chunksize: usize,
    ) -> Result<TaskIter<'a, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
    {
        Ok(Box::new(crate::mpi_pool::MpiPool::imap_unordered(
            self, f, input, chunksize,
        )?))
    }
}
