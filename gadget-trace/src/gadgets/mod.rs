//! The gadgets as their users see them.
//!
//! A gadget is one module here that declares everything the front end
//! knows of it, in one [`GadgetFrontend`] impl: its `trace` subcommand and
//! flags, how the flags become the parameters sent to the nodes, its
//! columns, its JSON fields and its compact line. Everything else in this
//! crate (the `trace` subcommands, request validation, the three output
//! formats) iterates over [`GADGETS`] and never names a gadget.
//!
//! The node side has the same shape, one module per gadget in
//! `gadget-node/src/gadgets/`; a test there checks that both registries and
//! the protocol's `oneof`s list the same gadgets.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use clap::{ArgMatches, FromArgMatches};
use gadget_proto::v1::{event, run_gadget_request, Event};

use crate::render::Cell;
use crate::request::TraceRequestError;

pub mod trace_exec;
pub mod trace_file;
pub mod trace_open;

/// Every gadget, in the order `trace --help` lists them. Adding a gadget is
/// its module and a line here.
pub static GADGETS: &[Gadget] = &[trace_open::GADGET, trace_exec::GADGET, trace_file::GADGET];

/// The gadget called `name` on the wire (`trace_open`).
pub fn find(name: &str) -> Option<Gadget> {
    GADGETS.iter().copied().find(|gadget| gadget.name() == name)
}

/// The gadget whose event `event` is; `None` for an event of no kind (a
/// newer node's gadget this client does not know).
pub fn of_event(event: &Event) -> Option<Gadget> {
    GADGETS.iter().copied().find(|gadget| gadget.0.owns(event))
}

/// What one gadget declares, from its flags to its rendering.
///
/// Implemented by a unit struct in the gadget's module, which then exports
/// `pub const GADGET: Gadget = Gadget::new(&Frontend::<ItsStruct>::NEW);`
/// for [`GADGETS`].
pub trait GadgetFrontend: Send + Sync + 'static {
    /// The gadget's event message in the protocol (`v1::OpenEvent`).
    type Event: 'static;
    /// The gadget's own flags, next to the ones every trace takes.
    type Flags: clap::Args + FromArgMatches;

    /// The gadget's name on the wire, one of `gadget_proto`'s names.
    const NAME: &'static str;
    /// Its subcommand of `trace` (`open` for `trace open`).
    const COMMAND: &'static str;
    /// What it traces, one line for `--help`.
    const ABOUT: &'static str;
    /// Every value [`GadgetFrontend::kind`] returns, for the documentation
    /// of the JSON output and the test that no two gadgets share one.
    const KINDS: &'static [&'static str];
    /// Its columns, after the common ones ([`crate::render::Column`]).
    const COLUMNS: &'static [GadgetColumn<Self::Event>];
    /// The columns shown when `-o columns` names none, common ones
    /// included, in order.
    const DEFAULT_COLUMNS: &'static [&'static str];
    /// The gadget's flags in the shortest valid `trace` command (empty when
    /// none is required), for tests that run every gadget.
    const MINIMAL_FLAGS: &'static [&'static str];

    /// The gadget's event in `kind`, if it is one.
    fn event(kind: &event::Kind) -> Option<&Self::Event>;
    /// What this event is called in JSON's `type` (`"open"`): per event,
    /// as one gadget can report several kinds of event. One of `KINDS`.
    fn kind(event: &Self::Event) -> &'static str;
    /// The word after the emoji of a compact line (`open`, `process`), at
    /// most 7 characters, from the vocabulary every gadget shares (see the
    /// compact output in [`crate::render`]); it may differ from the JSON
    /// `type`, which scripts depend on.
    fn compact_word(event: &Self::Event) -> &'static str;
    /// The emoji a compact line starts with when the event is not a
    /// failure (a failure starts with ❌).
    fn emoji(event: &Self::Event) -> &'static str;
    /// Checks the gadget's flags and turns them into its parameters.
    fn params(flags: Self::Flags) -> Result<run_gadget_request::Params, TraceRequestError>;
    /// The errno of an event that reports a failed call.
    fn failure(event: &Self::Event) -> Option<i32>;
    /// What the kernel will enforce with these parameters, as the start of
    /// a sentence (`SIGKILL at write on files under /etc/`), or `None` for
    /// a trace that only observes. The trace says it on stderr, with its
    /// scope, when it starts.
    fn enforcement(_params: &run_gadget_request::Params) -> Option<String> {
        None
    }
    /// Writes the gadget's JSON fields, each as `,"key":value`.
    fn write_json_fields(out: &mut Vec<u8>, event: &Self::Event);
    /// Writes what a compact line shows after where the process ran, each
    /// part led by a space (`comm` is the process's name).
    fn write_compact(out: &mut Vec<u8>, comm: &[u8], event: &Self::Event);
}

/// One of a gadget's columns.
pub struct GadgetColumn<E: 'static> {
    /// Its name in `-o columns=...`, lower-case.
    pub name: &'static str,
    /// Its title in the header line: the name in upper case.
    pub header: &'static str,
    /// Its width when it is not the last column.
    pub width: usize,
    /// Its cell for an event (formatted into the scratch buffer, or a slice
    /// of the event).
    pub cell: for<'e> fn(&'e E, &mut Vec<u8>) -> Cell<'e>,
}

/// A gadget, as the rest of the crate handles it: a name and what its
/// module declares, behind one pointer.
#[derive(Clone, Copy)]
pub struct Gadget(&'static dyn DynGadget);

impl Gadget {
    /// The gadget of a module's [`GadgetFrontend`], for its `GADGET` const.
    pub const fn new(frontend: &'static dyn DynGadget) -> Gadget {
        Gadget(frontend)
    }

    /// Its name on the wire (`trace_open`).
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// Its subcommand of `trace` (`open`).
    pub fn command_name(self) -> &'static str {
        self.0.command_name()
    }

    /// Its `trace` subcommand: the flags every trace takes, then the
    /// gadget's own.
    pub fn command(self) -> clap::Command {
        self.0.command()
    }

    /// What JSON's `type` calls `event`; `None` when it is not this
    /// gadget's.
    pub fn kind(self, event: &Event) -> Option<&'static str> {
        self.0.kind(event)
    }

    /// Every JSON `type` of the gadget's events.
    pub fn kinds(self) -> &'static [&'static str] {
        self.0.kinds()
    }

    pub(crate) fn compact_word(self, event: &Event) -> Option<&'static str> {
        self.0.compact_word(event)
    }

    pub(crate) fn emoji(self, event: &Event) -> Option<&'static str> {
        self.0.emoji(event)
    }

    /// Its flags in the shortest valid `trace` command.
    pub fn minimal_flags(self) -> &'static [&'static str] {
        self.0.minimal_flags()
    }

    pub(crate) fn default_columns(self) -> &'static [&'static str] {
        self.0.default_columns()
    }

    pub(crate) fn column_count(self) -> usize {
        self.0.column_count()
    }

    pub(crate) fn column_name(self, column: usize) -> &'static str {
        self.0.column_name(column)
    }

    pub(crate) fn column_header(self, column: usize) -> &'static str {
        self.0.column_header(column)
    }

    pub(crate) fn column_width(self, column: usize) -> usize {
        self.0.column_width(column)
    }

    pub(crate) fn cell<'e>(
        self,
        column: usize,
        event: &'e Event,
        scratch: &mut Vec<u8>,
    ) -> Cell<'e> {
        self.0.cell(column, event, scratch)
    }

    /// Checks the shape of the gadget's flags as clap parsed them.
    pub(crate) fn check_flags(self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.check_flags(matches)
    }

    /// The gadget's parameters from its flags, validated.
    pub(crate) fn params(
        self,
        matches: &ArgMatches,
    ) -> Result<run_gadget_request::Params, TraceRequestError> {
        self.0.params(matches)
    }

    pub(crate) fn failure(self, event: &Event) -> Option<i32> {
        self.0.failure(event)
    }

    pub(crate) fn enforcement(self, params: &run_gadget_request::Params) -> Option<String> {
        self.0.enforcement(params)
    }

    pub(crate) fn write_json_fields(self, out: &mut Vec<u8>, event: &Event) {
        self.0.write_json_fields(out, event)
    }

    pub(crate) fn write_compact(self, out: &mut Vec<u8>, comm: &[u8], event: &Event) {
        self.0.write_compact(out, comm, event)
    }
}

impl PartialEq for Gadget {
    fn eq(&self, other: &Gadget) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Gadget {}

impl Hash for Gadget {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for Gadget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Gadget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A [`GadgetFrontend`] behind a pointer; implemented only by [`Frontend`].
pub trait DynGadget: Send + Sync {
    #[doc(hidden)]
    fn name(&self) -> &'static str;
    #[doc(hidden)]
    fn command_name(&self) -> &'static str;
    #[doc(hidden)]
    fn command(&self) -> clap::Command;
    #[doc(hidden)]
    fn kind(&self, event: &Event) -> Option<&'static str>;
    #[doc(hidden)]
    fn kinds(&self) -> &'static [&'static str];
    #[doc(hidden)]
    fn compact_word(&self, event: &Event) -> Option<&'static str>;
    #[doc(hidden)]
    fn emoji(&self, event: &Event) -> Option<&'static str>;
    #[doc(hidden)]
    fn default_columns(&self) -> &'static [&'static str];
    #[doc(hidden)]
    fn minimal_flags(&self) -> &'static [&'static str];
    #[doc(hidden)]
    fn column_count(&self) -> usize;
    #[doc(hidden)]
    fn column_name(&self, column: usize) -> &'static str;
    #[doc(hidden)]
    fn column_header(&self, column: usize) -> &'static str;
    #[doc(hidden)]
    fn column_width(&self, column: usize) -> usize;
    #[doc(hidden)]
    fn cell<'e>(&self, column: usize, event: &'e Event, scratch: &mut Vec<u8>) -> Cell<'e>;
    #[doc(hidden)]
    fn check_flags(&self, matches: &ArgMatches) -> Result<(), clap::Error>;
    #[doc(hidden)]
    fn params(&self, matches: &ArgMatches)
        -> Result<run_gadget_request::Params, TraceRequestError>;
    #[doc(hidden)]
    fn owns(&self, event: &Event) -> bool;
    #[doc(hidden)]
    fn failure(&self, event: &Event) -> Option<i32>;
    #[doc(hidden)]
    fn enforcement(&self, params: &run_gadget_request::Params) -> Option<String>;
    #[doc(hidden)]
    fn write_json_fields(&self, out: &mut Vec<u8>, event: &Event);
    #[doc(hidden)]
    fn write_compact(&self, out: &mut Vec<u8>, comm: &[u8], event: &Event);
}

/// The one [`DynGadget`]: a [`GadgetFrontend`]'s declarations, reached
/// through a pointer.
pub struct Frontend<G>(PhantomData<fn() -> G>);

impl<G: GadgetFrontend> Frontend<G> {
    /// The value a module's `GADGET` const points to.
    pub const NEW: Frontend<G> = Frontend(PhantomData);

    fn event_of(event: &Event) -> Option<&G::Event> {
        event.kind.as_ref().and_then(G::event)
    }
}

impl<G: GadgetFrontend> DynGadget for Frontend<G> {
    fn name(&self) -> &'static str {
        G::NAME
    }

    fn command_name(&self) -> &'static str {
        G::COMMAND
    }

    fn command(&self) -> clap::Command {
        use clap::Args as _;
        // The common flags first, then the gadget's, in help as on the
        // command line; `about` last, as the derives set it from doc
        // comments.
        let common = crate::cli::TraceArgs::augment_args(clap::Command::new(G::COMMAND));
        <G::Flags as clap::Args>::augment_args(common)
            .about(G::ABOUT)
            .long_about(None)
    }

    fn kind(&self, event: &Event) -> Option<&'static str> {
        Self::event_of(event).map(G::kind)
    }

    fn kinds(&self) -> &'static [&'static str] {
        G::KINDS
    }

    fn compact_word(&self, event: &Event) -> Option<&'static str> {
        Self::event_of(event).map(G::compact_word)
    }

    fn emoji(&self, event: &Event) -> Option<&'static str> {
        Self::event_of(event).map(G::emoji)
    }

    fn minimal_flags(&self) -> &'static [&'static str] {
        G::MINIMAL_FLAGS
    }

    fn default_columns(&self) -> &'static [&'static str] {
        G::DEFAULT_COLUMNS
    }

    fn column_count(&self) -> usize {
        G::COLUMNS.len()
    }

    fn column_name(&self, column: usize) -> &'static str {
        G::COLUMNS[column].name
    }

    fn column_header(&self, column: usize) -> &'static str {
        G::COLUMNS[column].header
    }

    fn column_width(&self, column: usize) -> usize {
        G::COLUMNS[column].width
    }

    fn cell<'e>(&self, column: usize, event: &'e Event, scratch: &mut Vec<u8>) -> Cell<'e> {
        match Self::event_of(event) {
            Some(own) => (G::COLUMNS[column].cell)(own, scratch),
            // Another gadget's event leaves this gadget's cells empty.
            None => Cell::EMPTY,
        }
    }

    fn check_flags(&self, matches: &ArgMatches) -> Result<(), clap::Error> {
        G::Flags::from_arg_matches(matches).map(drop)
    }

    fn params(
        &self,
        matches: &ArgMatches,
    ) -> Result<run_gadget_request::Params, TraceRequestError> {
        // check_flags() accepted these matches when the command line was
        // parsed, so this cannot fail.
        let flags = G::Flags::from_arg_matches(matches)
            .unwrap_or_else(|err| panic!("{} flags parsed before: {err}", G::NAME));
        G::params(flags)
    }

    fn owns(&self, event: &Event) -> bool {
        Self::event_of(event).is_some()
    }

    fn failure(&self, event: &Event) -> Option<i32> {
        Self::event_of(event).and_then(G::failure)
    }

    fn enforcement(&self, params: &run_gadget_request::Params) -> Option<String> {
        G::enforcement(params)
    }

    fn write_json_fields(&self, out: &mut Vec<u8>, event: &Event) {
        if let Some(own) = Self::event_of(event) {
            G::write_json_fields(out, own);
        }
    }

    fn write_compact(&self, out: &mut Vec<u8>, comm: &[u8], event: &Event) {
        if let Some(own) = Self::event_of(event) {
            G::write_compact(out, comm, own);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_commands_and_kinds_are_unique() {
        for (i, a) in GADGETS.iter().enumerate() {
            for b in &GADGETS[i + 1..] {
                assert_ne!(a.name(), b.name());
                assert_ne!(a.command_name(), b.command_name());
            }
        }
        let mut kinds: Vec<&str> = GADGETS.iter().flat_map(|g| g.kinds()).copied().collect();
        // "status" is the JSON type of a node's trace status.
        kinds.push("status");
        let count = kinds.len();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), count, "a JSON type is used twice");
    }

    #[test]
    fn gadgets_are_found_by_name() {
        for gadget in GADGETS {
            assert_eq!(find(gadget.name()), Some(*gadget));
        }
        assert_eq!(find("trace_tcp"), None);
    }

    #[test]
    fn columns_are_named_and_titled_alike() {
        for gadget in GADGETS {
            for column in 0..gadget.column_count() {
                let (name, header) = (gadget.column_name(column), gadget.column_header(column));
                assert_eq!(name.to_ascii_uppercase(), header, "{gadget}");
                assert!(
                    header.len() <= gadget.column_width(column),
                    "{gadget}.{name}"
                );
            }
        }
    }
}
