//! What a failed validation returns.

/// One fault, at a field path of the document (`storage.volumes[0].size`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", if .path.is_empty() { .message.clone() } else { format!("{}: {}", .path, .message) })]
pub struct FieldError {
    /// Where, in the document's terms; empty for a note about the whole list.
    pub path: String,
    /// What is wrong (never a secret).
    pub message: String,
}

/// Every fault of a document, in document order; displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.errors))]
pub struct ValidationErrors {
    pub(super) errors: Vec<FieldError>,
}

fn lines(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ValidationErrors {
    /// The faults.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.errors.iter()
    }

    /// How many faults are listed.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Never true for an error returned by validation.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The faults, by value.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.errors
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a FieldError;
    type IntoIter = std::slice::Iter<'a, FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
