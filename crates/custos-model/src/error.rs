//! The validation error every layer reports to users: which field, and what is wrong.

use std::fmt;

/// One field that failed validation. `field` is a dotted path into the record
/// (`depth.pending`), so clients can point at the exact input at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Checks shared by every record type. Each returns the error naming `field`.
pub mod check {
    use super::FieldError;

    /// A bounded, printable string: 1..=max characters, no control characters.
    pub fn text(field: &str, value: &str, max_chars: usize) -> Result<(), FieldError> {
        if value.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        bounded_text(field, value, max_chars)
    }

    /// Like [`text`] but allows the empty string and newlines (error messages).
    pub fn bounded_text(field: &str, value: &str, max_chars: usize) -> Result<(), FieldError> {
        let chars = value.chars().count();
        if chars > max_chars {
            return Err(FieldError::new(field, format!("must be at most {max_chars} characters (got {chars})")));
        }
        if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(FieldError::new(field, "must not contain control characters"));
        }
        Ok(())
    }

    pub fn non_negative(field: &str, value: i64) -> Result<(), FieldError> {
        if value < 0 {
            return Err(FieldError::new(field, format!("must be non-negative (got {value})")));
        }
        Ok(())
    }

    /// An identifier: 1..=max of `A-Z a-z 0-9 . _ : -`, safe in URLs, paths and labels.
    pub fn identifier(field: &str, value: &str, max_len: usize) -> Result<(), FieldError> {
        if value.is_empty() || value.len() > max_len {
            return Err(FieldError::new(field, format!("must be 1 to {max_len} characters")));
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')) {
            return Err(FieldError::new(field, "may contain only letters, digits, '.', '_', ':' and '-'"));
        }
        Ok(())
    }
}
