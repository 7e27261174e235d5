//! Integration tests of the `crit` binary on the CRIU 4.2 fixtures (one test binary; one module per area;
//! the shared helpers in cli/common.rs, fixture paths in the cryo-testsupport crate).

mod cli {
    pub mod common;
    // checkpoint archives (podman --export, kubelet), crit inspect
    pub mod archive;
    // explorers, memory, core export
    pub mod core;
    pub mod explore;
    pub mod mem;
    // decode/encode/info/show, errors and closed pipes
    pub mod codec;
    // check, diff, rewrite, edit
    pub mod edit;
    // crit-NAME external subcommands
    pub mod external;
}
