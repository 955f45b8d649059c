-- compatible-with: 0.1
-- Label jobs: where a job added at run time comes from ("label: CONTAINER" for a job a
-- container's labels declare); NULL for a job of a module.

ALTER TABLE jobs
    ADD COLUMN source text;
