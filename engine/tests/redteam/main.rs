//! The red-team suite: each finding of the host-side security review (issue 12), written as a
//! real attack by a hostile module or raw guest code, and asserted to be contained. One module
//! per attack class; each test names the finding it reproduces. Tests that need /dev/kvm fail
//! loudly without it (they never pass silently).
//!
//! Every attack runs in both isolation modes and, in KVM mode, with both host-call transports
//! (`ring` and `exit`) unless the finding is specific to one of them (the docs say which).

mod common;
mod artifact;
mod files;
mod store;
mod deadline;
mod ring;
mod compile;
mod misc;
mod descriptors;
