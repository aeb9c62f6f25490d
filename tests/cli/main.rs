//! The command line, one module per command (or group of commands), sharing the command
//! builder and checks of `support`. Against bad input each case gets a one-line error naming
//! the file and the problem, a non-zero exit, no panic, and no output file left behind; the
//! happy paths run the shipped model on the samples. Rate control's own properties are the
//! library's tests (`crates/rvq/src/tests/rate.rs`); here only what a user of the command sees.

mod archive;
mod decode;
mod encode;
mod general;
mod measure;
mod support;
mod train;
