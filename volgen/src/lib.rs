//! Volume definitions and the brickfs admin CLI.
