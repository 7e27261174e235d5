//! Non-fd task state, one module per kind, each owning both directions
//! (firecracker's `Persist` idea): the protobuf entry is the on-disk state;
//! `dump` builds it from what was read from /proc or by the parasite;
//! `describe` turns it into a validated domain type for the restore (the
//! sanity checks apart from the decoding, which `cryo_image` does).
//!
//! Nothing here knows `dump::` or `restore::`: their errors wrap the errors
//! of these modules, and the restorer's ABI structs are filled from the
//! domain types by the restore.

pub mod affinity;
pub mod cgroup;
pub mod creds;
pub mod mm;
pub mod mnt;
pub mod netns;
pub mod ns;
pub mod rlimits;
pub mod seccomp;
pub mod sigactions;
pub mod timens;
pub mod timers;
pub mod userns;

/// Why a state entry of an image set cannot be restored (any kind). The
/// caller adds the image file and the pid.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Mm(#[from] mm::MmError),
    #[error(transparent)]
    Creds(#[from] creds::CredsError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    Sigactions(#[from] sigactions::SigactionError),
    #[error(transparent)]
    Timers(#[from] timers::TimerError),
}
