-- Issue 15: backfilled facts (`gridhub import --historical`, `gridhub replay --historical`) are
-- recorded like any other but never dispatched; analysts can tell them apart (1 = backfill).
ALTER TABLE {db}.reports ADD COLUMN historical UInt8 DEFAULT 0;
ALTER TABLE {db}.cases ADD COLUMN historical UInt8 DEFAULT 0;
