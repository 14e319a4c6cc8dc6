//! apiscope-http (in progress).
