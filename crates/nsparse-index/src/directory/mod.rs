//! The index directory's files at the lowest level: atomic replacement
//! with fsync, the checksummed section container every file but the WAL
//! uses, the `O_DIRECT` sink that writes segment bodies, the writer lock,
//! and the I/O fault-injection hook every create, write, fsync and rename
//! passes.

pub(crate) mod atomic;
pub(crate) mod container;
pub mod faults;
pub(crate) mod lock;
pub(crate) mod mmap;
pub(crate) mod sink;
