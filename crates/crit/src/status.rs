//! Exit statuses other than plain success/failure (`crit check`, `crit diff` behave like diff(1)).

use std::fmt;

/// An error that only carries an exit status: the command has already said what it had to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// The exit status an error asks for, if it is an [`Exit`].
pub fn exit_code(e: &anyhow::Error) -> Option<u8> {
    e.downcast_ref::<Exit>().map(|x| x.0)
}
