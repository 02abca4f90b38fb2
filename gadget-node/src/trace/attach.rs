//! Loading a gadget's programs and attaching them to their hooks.

use aya::programs::TracePoint;
use aya::Ebpf;

use crate::gadgets::PreparedGadget;

use super::TraceStartError;

/// Loads and attaches every program; returns their kernel ids.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    gadget: &dyn PreparedGadget,
    warnings: &mut Vec<String>,
) -> Result<Vec<u32>, TraceStartError> {
    let mut ids = Vec::new();
    for point in gadget.attach_points() {
        let fail = |source| TraceStartError::Attach {
            program: point.program,
            category: point.category,
            tracepoint: point.name,
            source: Box::new(source),
        };
        let program: &mut TracePoint = ebpf
            .program_mut(point.program)
            .ok_or_else(|| fail(aya::programs::ProgramError::NotLoaded))?
            .try_into()
            .map_err(fail)?;
        program.load().map_err(fail)?;
        if let Err(err) = program.attach(point.category, point.name) {
            if point.required {
                return Err(fail(err));
            }
            warnings.push(format!(
                "{}/{} is not available on this kernel, its events are not traced",
                point.category, point.name
            ));
            continue;
        }
        if let Ok(info) = program.info() {
            ids.push(info.id());
        }
    }
    Ok(ids)
}
