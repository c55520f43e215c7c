//! A full disk (placeholder).
