//! Dex Edge test support: the local fakes of third-party services (also
//! run as the `fakes` binary by the local dev stack).

pub mod fakes;
// harness module added by the e2e suite
