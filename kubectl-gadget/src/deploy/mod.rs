//! `kubectl gadget deploy` and `undeploy`.
//!
//! Deploy is a server-side apply of the objects in [`crate::manifests`] with
//! the field manager [`FIELD_MANAGER`], after checking that it takes over
//! nothing it did not make and downgrades nothing unasked ([`Refusal`]);
//! undeploy deletes those objects when they carry deploy's
//! [`MANAGED_BY`](crate::manifests::MANAGED_BY) label. Failed API calls
//! become one line each, worded by [`crate::api_error`].
//!
//! One concern per file: the flags ([`DeployArgs`], [`UndeployArgs`]),
//! whether the pods need CAP_SYS_RESOURCE on the selected nodes
//! ([`MemlockCapability`]), the apply ([`deploy()`], [`print_manifests`]),
//! waiting for the rollout with its progress lines ([`progress_line`]), the
//! report of what is not ready when the wait times out ([`pod_report`]),
//! and [`undeploy()`]. How a pod's
//! state is put into words is [`crate::pod_status`], shared with
//! [`crate::connect`].

mod api_server;
mod apply;
mod args;
mod memlock;
mod ownership;
mod report;
mod rollout;
mod undeploy;
mod version_skew;

pub use apply::{deploy, print_manifests, FIELD_MANAGER};
pub use args::{parse_timeout, DeployArgs, UndeployArgs};
pub use memlock::MemlockCapability;
pub use ownership::Refusal;
pub use report::pod_report;
pub use rollout::progress_line;
pub use undeploy::undeploy;
pub use version_skew::VersionChange;
