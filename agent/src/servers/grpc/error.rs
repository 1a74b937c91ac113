//! The one mapping from the agent's errors to gRPC status codes. Clients get
//! the Display text; invalid specs also carry google.rpc.BadRequest.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::control::ControlError;
use tfagent_supervisor::SuperviseError;

impl From<ControlError> for Status {
    fn from(error: ControlError) -> Self {
        match &error {
            ControlError::Invalid(errors) => {
                let mut details = ErrorDetails::new();
                for field in errors.iter() {
                    details.add_bad_request_violation(field.path.clone(), field.message.clone());
                }
                Status::with_error_details(Code::InvalidArgument, error.to_string(), details)
            }
            ControlError::State(_) | ControlError::Internal { .. } => {
                Status::internal(error.to_string())
            }
            ControlError::Storage(_) => Status::unavailable(error.to_string()),
            ControlError::Service(SuperviseError::NotFound(_)) => {
                Status::not_found(error.to_string())
            }
            ControlError::Service(SuperviseError::ShuttingDown) => {
                Status::unavailable(error.to_string())
            }
            ControlError::Service(_) => Status::failed_precondition(error.to_string()),
            ControlError::Kubeconfig(_) => Status::failed_precondition(error.to_string()),
            ControlError::Precondition(_) => Status::failed_precondition(error.to_string()),
            ControlError::BadRequest(_) => Status::invalid_argument(error.to_string()),
            ControlError::PermissionDenied(_) => Status::permission_denied(error.to_string()),
            ControlError::Trial(_) => Status::internal(error.to_string()),
            ControlError::Reset { .. } => Status::failed_precondition(error.to_string()),
        }
    }
}
