//! Answers from the registry zone (issue: the core).
