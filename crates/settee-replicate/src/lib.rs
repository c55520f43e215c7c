//! Settee replicator (in progress, issue 5).
