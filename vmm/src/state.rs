//! vCPU state save/restore (filled in by the snapshot work).
