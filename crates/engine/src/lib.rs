//! cryo engine (placeholder).
