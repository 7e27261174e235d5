//! cryo tui (placeholder).
