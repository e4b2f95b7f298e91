//! The Urna server (built out by the node issue).
