//! The learned schedule-quality predictor (S³); being written.
