//! The `trace` command line as clap parses it: one subcommand per gadget of
//! [`GADGETS`], each with the flags every trace takes ([`TraceArgs`]) and
//! the gadget's own. Checked only for their shape here; [`crate::request`]
//! validates them.
//!
//! Both `kubectl gadget trace` and `gadget-node trace` (local mode) embed
//! [`TraceCommand`]; each says, through a [`TraceHelp`], what its help adds
//! about where the gadget runs.

use std::fmt;
use std::marker::PhantomData;

use clap::{ArgMatches, Args, FromArgMatches, Subcommand};

use crate::gadgets::{Gadget, GADGETS};

/// Flags every trace takes: which processes, for how long, printed how.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Only pods in this namespace (default: the kubeconfig context's
    /// namespace, else "default"; with --node-address: every namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Pods in every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// Only the pod with this name.
    #[arg(short = 'p', long, value_name = "POD")]
    pub podname: Option<String>,

    /// Only containers with this name.
    #[arg(short = 'c', long, value_name = "CONTAINER")]
    pub containername: Option<String>,

    /// Only pods whose labels match this selector, e.g. 'app=web,tier!=db'
    /// or 'env in (prod,staging)'.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// Also trace processes that run in no container (the host's).
    #[arg(long)]
    pub host: bool,

    /// Only the process with this id (as seen from the host).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Only processes of this user id (as seen from the host).
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,

    /// Stop after this many seconds; 0 traces until Ctrl-C.
    #[arg(short = 't', long, value_name = "SECONDS", default_value_t = 0)]
    pub timeout: u32,

    /// Output format: columns, columns=NAME,NAME,... (see the column names in
    /// an error for a wrong one), json (one object per line) or compact.
    #[arg(short = 'o', long, value_name = "FORMAT", default_value = "columns")]
    pub output: String,

    /// Size of each node's ring buffer, in bytes or with a K or M suffix
    /// (powers of 1024), e.g. 512K or 16M; the node rounds it up to a power
    /// of two (default: the node's).
    #[arg(long, value_name = "SIZE")]
    pub ring_buffer_size: Option<String>,
}

/// What a binary's `trace <gadget> --help` says after the flags: where the
/// gadget runs and how it is reached.
pub trait TraceHelp: 'static {
    /// Shown after the flags of every gadget's subcommand.
    const AFTER_LONG_HELP: &'static str;
}

/// `trace <gadget>` as parsed: the gadget, the flags every trace takes, and
/// the gadget's own flags (turned into its parameters by
/// [`crate::request::TraceRequest::from_command`]).
pub struct TraceCommand<H> {
    /// The gadget the subcommand names.
    pub gadget: Gadget,
    /// Flags every trace takes.
    pub common: TraceArgs,
    /// The subcommand's matches, which hold the gadget's own flags.
    pub(crate) matches: ArgMatches,
    help: PhantomData<fn() -> H>,
}

impl<H> fmt::Debug for TraceCommand<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceCommand")
            .field("gadget", &self.gadget)
            .field("common", &self.common)
            .finish_non_exhaustive()
    }
}

impl<H> Clone for TraceCommand<H> {
    fn clone(&self) -> Self {
        TraceCommand {
            gadget: self.gadget,
            common: self.common.clone(),
            matches: self.matches.clone(),
            help: PhantomData,
        }
    }
}

impl<H: TraceHelp> FromArgMatches for TraceCommand<H> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, sub)) = matches.subcommand() else {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::MissingSubcommand,
                "a gadget is required",
            ));
        };
        let gadget = GADGETS
            .iter()
            .copied()
            .find(|gadget| gadget.command_name() == name)
            .ok_or_else(|| {
                clap::Error::raw(
                    clap::error::ErrorKind::InvalidSubcommand,
                    format!("no gadget {name:?}"),
                )
            })?;
        gadget.check_flags(sub)?;
        Ok(TraceCommand {
            gadget,
            common: TraceArgs::from_arg_matches(sub)?,
            matches: sub.clone(),
            help: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl<H: TraceHelp> Subcommand for TraceCommand<H> {
    fn augment_subcommands(command: clap::Command) -> clap::Command {
        GADGETS
            .iter()
            .fold(command, |command, &gadget| {
                command.subcommand(gadget.command().after_long_help(H::AFTER_LONG_HELP))
            })
            .subcommand_required(true)
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        Self::augment_subcommands(command)
    }

    fn has_subcommand(name: &str) -> bool {
        GADGETS.iter().any(|gadget| gadget.command_name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    struct NoHelp;

    impl TraceHelp for NoHelp {
        const AFTER_LONG_HELP: &'static str = "where it runs";
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        trace: TraceCommand<NoHelp>,
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_gadget_is_a_subcommand_with_the_common_flags_first() {
        let command = Cli::command();
        for gadget in GADGETS {
            let sub = command
                .find_subcommand(gadget.command_name())
                .unwrap_or_else(|| panic!("no subcommand for {gadget}"));
            let flags: Vec<&str> = sub.get_arguments().map(|a| a.get_id().as_str()).collect();
            assert_eq!(flags.first(), Some(&"namespace"), "{gadget}");
            assert_eq!(flags.len(), gadget.command().get_arguments().count());
            assert_eq!(
                sub.get_after_long_help()
                    .map(ToString::to_string)
                    .as_deref(),
                Some("where it runs")
            );
        }
    }

    #[test]
    fn the_subcommand_picks_the_gadget() {
        for gadget in GADGETS {
            let cli = Cli::try_parse_from(["x", gadget.command_name(), "-n", "web"]).unwrap();
            assert_eq!(cli.trace.gadget, *gadget);
            assert_eq!(cli.trace.common.namespace.as_deref(), Some("web"));
        }
        assert!(Cli::try_parse_from(["x", "nope"]).is_err());
        assert!(Cli::try_parse_from(["x"]).is_err());
    }
}
