//! FUSE front-end over the client stack.
