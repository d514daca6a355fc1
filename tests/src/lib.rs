//! Integration-test harness: real brickd processes and real FUSE mounts.
