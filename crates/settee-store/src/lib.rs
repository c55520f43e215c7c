//! Settee local document store on sled (in progress, issue 3).
