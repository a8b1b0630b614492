//! keel-client: placeholder.
