//! Row codec (in progress).
