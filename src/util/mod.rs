//! Small pure helpers shared by the core (and the shell): the varint
//! encoding, the persisted-state codec built on it, id hashing and cache
//! prefetch hints. Depends
//! on nothing else in the crate.

pub mod codec;
pub mod hash;
pub(crate) mod prefetch;
pub(crate) mod varint;
