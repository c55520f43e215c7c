//! Settee CouchDB HTTP client (in progress, issue 4).
