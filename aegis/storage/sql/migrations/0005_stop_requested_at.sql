-- compatible-with: 0.1
-- When a stop or kill request for the container was last seen: the health reports of a
-- container that is still shutting down after it are not strikes.

ALTER TABLE containers ADD COLUMN stop_requested_at timestamptz;
