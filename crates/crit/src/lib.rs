//! cryo crit (placeholder).
