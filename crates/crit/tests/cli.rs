//! Integration tests of the `crit` binary on the CRIU 4.2 fixtures (one test binary; one module per area).

mod cli {
    pub mod common;
    // explorers, memory, core export
    pub mod core;
    pub mod explore;
    pub mod mem;
}
