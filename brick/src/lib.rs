//! brickd: stores one brick of a volume as plain files under a directory.
