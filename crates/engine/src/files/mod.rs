//! One module per kind of open file, each holding both sides (dump and
//! restore) of that object, as CRIU's files-reg.c / pipes.c / memfd.c do.

pub mod memfd;
pub mod pipe;
pub mod reg;
