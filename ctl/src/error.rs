//! The one error of tfagentctl's commands: a message for stderr, with a
//! line per detail. It imports nothing of this crate, so every command may
//! return it.

use std::io;

use tonic::Code;
use tonic_types::StatusExt;

/// A failure to report on stderr; the process then exits non-zero.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", indented_lines(details))]
pub struct CtlError {
    pub message: String,
    /// One line each under the message (e.g. every invalid field).
    pub details: Vec<String>,
    /// Whoever read our output went away (`tfagentctl events | head`): not
    /// worth a message.
    pub output_closed: bool,
}

fn indented_lines(details: &[String]) -> String {
    details
        .iter()
        .map(|detail| format!("\n  {detail}"))
        .collect()
}

impl CtlError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: Vec::new(),
            output_closed: false,
        }
    }

    pub(crate) fn writing(error: io::Error) -> Self {
        Self {
            output_closed: error.kind() == io::ErrorKind::BrokenPipe,
            ..Self::new(format!("writing output: {error}"))
        }
    }

    fn from_status(status: &tonic::Status) -> Self {
        let fields = bad_request_fields(status);
        if status.code() == Code::InvalidArgument && !fields.is_empty() {
            let message = format!(
                "the agent refused the spec: {} invalid field(s)",
                fields.len()
            );
            return Self {
                details: fields
                    .into_iter()
                    .map(|(field, message)| format!("{field}: {message}"))
                    .collect(),
                ..Self::new(message)
            };
        }
        let hint = match status.code() {
            Code::PermissionDenied if status.message().starts_with("uid ") => {
                " (the socket serves root only)"
            }
            Code::Unavailable if !status.message().contains("shutting down") => {
                " (is tfagent running?)"
            }
            _ => "",
        };
        Self::new(format!("{}{hint}", status.message()))
    }
}

impl From<tonic::Status> for CtlError {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

/// The field violations of an INVALID_ARGUMENT status, as (field, message).
/// Defined here, where a refused spec becomes one line per field; the
/// client module re-exports it for the agent's API tests.
pub fn bad_request_fields(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn a_refused_spec_lists_each_field_on_its_own_line() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("node_name", "required");
        details.add_bad_request_violation("network.wireguard.mtu", "must be 1280..=9000");
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "invalid", details);
        let shown = CtlError::from(status).to_string();
        assert_eq!(
            shown,
            "the agent refused the spec: 2 invalid field(s)\n  node_name: required\n  network.wireguard.mtu: must be 1280..=9000"
        );
    }

    #[test]
    fn other_errors_are_one_line_with_a_hint() {
        let shown = CtlError::from(tonic::Status::permission_denied("uid 7 may not")).to_string();
        assert_eq!(shown, "uid 7 may not (the socket serves root only)");
        let shown =
            CtlError::from(tonic::Status::unavailable("tfagent is shutting down")).to_string();
        assert_eq!(shown, "tfagent is shutting down");
    }
}
