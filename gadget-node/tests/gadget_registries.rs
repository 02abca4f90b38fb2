//! The gadgets are listed in three places that must agree: the node's
//! registry (`gadget_node::gadgets::GADGETS`: what the kernel runs), the
//! front end's (`gadget_trace::gadgets::GADGETS`: flags and rendering) and
//! the protocol's oneofs (a parameters message and an event message per
//! gadget). No unit test needs root: nothing is loaded.

use clap::Parser;
use gadget_proto::oneof_fields;
use gadget_proto::v1;
use gadget_trace::cli::{TraceCommand, TraceHelp};
use gadget_trace::request::{NamespaceScope, TraceRequest};
use prost::Message;

enum NoHelp {}

impl TraceHelp for NoHelp {
    const AFTER_LONG_HELP: &'static str = "";
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    trace: TraceCommand<NoHelp>,
}

fn node_names() -> Vec<&'static str> {
    gadget_node::gadgets::GADGETS
        .iter()
        .map(|gadget| gadget.name())
        .collect()
}

fn front_end_names() -> Vec<&'static str> {
    gadget_trace::gadgets::GADGETS
        .iter()
        .map(|gadget| gadget.name())
        .collect()
}

/// A message whose only field is `number`, an empty message: decoding it
/// sets that oneof variant to its default.
fn with_empty_field<M: Message + Default>(number: i32) -> M {
    let key = (number as u64) << 3 | 2; // wire type 2: length-delimited
    let mut bytes = Vec::new();
    prost::encoding::encode_varint(key, &mut bytes);
    bytes.push(0);
    M::decode(&bytes[..]).unwrap()
}

#[test]
fn the_node_and_the_front_end_know_the_same_gadgets_in_the_same_order() {
    assert_eq!(node_names(), front_end_names());
}

#[test]
fn every_gadget_has_its_own_parameters_in_the_protocol() {
    assert_eq!(
        oneof_fields::RUN_GADGET_PARAMS.len(),
        node_names().len(),
        "RunGadgetRequest.params should have one entry per gadget"
    );
    // Each parameters message is taken by exactly one node gadget.
    for &number in oneof_fields::RUN_GADGET_PARAMS {
        let request: v1::RunGadgetRequest = with_empty_field(number);
        let params = request.params.expect("a params variant");
        let takers: Vec<&str> = gadget_node::gadgets::GADGETS
            .iter()
            .filter(|gadget| gadget.prepare(Some(&params)).is_ok())
            .map(|gadget| gadget.name())
            .collect();
        assert_eq!(takers.len(), 1, "params field {number}: {takers:?}");
    }
    // What each front end sends for its shortest command, its node gadget
    // takes.
    for gadget in gadget_trace::gadgets::GADGETS {
        let command_line = ["trace", gadget.command_name()]
            .into_iter()
            .chain(gadget.minimal_flags().iter().copied());
        let cli = Cli::try_parse_from(command_line).unwrap();
        let request = TraceRequest::from_command(cli.trace, NamespaceScope::All).unwrap();
        let run = request.run_request(None);
        assert_eq!(run.gadget, gadget.name());
        let node_gadget = gadget_node::gadgets::find(&run.gadget).unwrap();
        assert!(
            node_gadget.prepare(run.params.as_ref()).is_ok(),
            "{gadget}: the node refuses the front end's default parameters"
        );
    }
}

#[test]
fn every_event_of_the_protocol_is_rendered_by_one_front_end_gadget() {
    let mut owners = Vec::new();
    for &number in oneof_fields::EVENT_KIND {
        let event: v1::Event = with_empty_field(number);
        assert!(event.kind.is_some(), "event field {number}");
        let owner = gadget_trace::gadgets::of_event(&event)
            .unwrap_or_else(|| panic!("no front-end gadget renders event field {number}"));
        owners.push(owner.name());
    }
    for name in front_end_names() {
        assert!(
            owners.contains(&name),
            "{name} owns no event of the protocol"
        );
    }
}

#[test]
fn trace_files_limits_are_the_kernels_on_both_sides() {
    use gadget_node::gadgets::trace_file::record::{PATTERNS_MAX, PATTERN_LEN_MAX};
    use gadget_trace::gadgets::trace_file::{MAX_FOLLOWED_PATHS, MAX_FOLLOWED_PATH_BYTES};

    // The kernel's limits (tied to trace_file.h by the node's layout test)
    // are the ones the front end checks flags and policies against, so a
    // request the front end lets through is one the node takes.
    assert_eq!(MAX_FOLLOWED_PATHS, PATTERNS_MAX);
    assert_eq!(MAX_FOLLOWED_PATH_BYTES, PATTERN_LEN_MAX);
    let longest = format!("/{}", "a".repeat(MAX_FOLLOWED_PATH_BYTES - 1));
    let params = v1::run_gadget_request::Params::File(v1::FileParams {
        paths: vec![longest.into(); MAX_FOLLOWED_PATHS],
        ..Default::default()
    });
    let node = gadget_node::gadgets::find(gadget_proto::TRACE_FILE).unwrap();
    assert!(node.prepare(Some(&params)).is_ok());
}
