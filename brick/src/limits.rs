//! The numbers that bound a brick's work, in one place.

use std::time::Duration;

/// Reads and writes above this many bytes run on the blocking pool, so a
/// big transfer never holds up the brick's one request thread.
pub const HEAVY_IO: usize = 128 * 1024;

/// How long a new connection may take to say what it is (the first four
/// bytes of either connection, the data connection's session hello): a
/// silent peer must not hold a socket and a task for ever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
