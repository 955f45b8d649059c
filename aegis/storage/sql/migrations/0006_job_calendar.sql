-- compatible-with: 0.1
-- Calendar-correct jobs: the time zone each job's slots follow (as its daemons advertise
-- it), and the silence watch of jobs with an expect_every: since when a job is watched
-- (first seen, or last resumed or unpaused) and since when it has been silent.

ALTER TABLE jobs ADD COLUMN timezone text NOT NULL DEFAULT 'UTC';
ALTER TABLE jobs ADD COLUMN watched_since timestamptz NOT NULL DEFAULT now();
ALTER TABLE jobs ADD COLUMN silent_since timestamptz;
