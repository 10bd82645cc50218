//! Small pure helpers shared by the core (and the shell): the varint
//! encoding, the persisted-state codec built on it, and id hashing. Depends
//! on nothing else in the crate.

pub mod codec;
pub mod hash;
pub(crate) mod varint;
