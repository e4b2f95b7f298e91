//! Fault-injection harness for an Urna cluster (built out by the chaos issue).
