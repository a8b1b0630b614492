//! keel-store: placeholder until the modules land.
